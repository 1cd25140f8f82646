"""Stage 2: train MeBT on the token cache; writes OUT/mebt.pt, OUT/metrics.jsonl and OUT/samples/.

One step (docs/curriculum.md): the curriculum picks a window length T (latent frames) for the batch; each sample
is a random cached clip cut to a random window of T frames; a random mask ratio splits the window's positions
into context (visible) and targets (hidden); the loss is the cross-entropy on the targets. AdamW (decay on
Linear weights only), linear warm-up then cosine decay to lr * min_lr_ratio, gradient clipping.
Every eval_every steps: held-out cross-entropy at a fixed mask ratio and a fixed seed, and a checkpoint; every
keep_every steps (--keep-every, off by default) a copy of the checkpoint that later evaluations do not overwrite.
Samples (iterative decoding -> tokenizer -> GIF) every sample_every steps and at the end.

The GPU never waits for the host: a step (train_step) reads no value back from the device. The batch is drawn on
the CPU and copied from pinned memory without blocking; the loss, the gradient norm and the finiteness check
stay on the device and are read every LOG_EVERY steps and before every checkpoint. --compile compiles one graph
with symbolic sizes (T, Nc and Nm change every step) instead of one per shape.

Run it through train.py (needs OUT/tokenizer.pt):
    python train.py --stage transformer --transformer-steps 200 --out-dir /tmp/tok
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import torch
import torch.fx.experimental._config as fx_config   # compile_model: sizes as separate symbols
from tqdm import tqdm

from mebt.checkpoint import load_checkpoint, save_checkpoint
from mebt.config import Config, TrainConfig
from mebt.cpu_load import warn_if_cpu_busy
from mebt.curriculum import Curriculum
from mebt.data import build_dataset
from mebt.distributed import (Dist, GracefulStop, Stopped, any_rank, barrier, max_across, rng_state, set_rng_state,
                              shared_generator, step_generator, sum_across, wrap)
from mebt.masking import sample_frame_split, sample_split
from mebt.model import MeBT, check_indices, masked_token_loss
from mebt.pipeline import (LossNotFinite, MetricsLog, RunPaths, autocast, check_tokenizer_matches, generate_videos,
                           load_tokenizer, refuse_overwrite, sampling_settings)
from mebt.token_cache import KIND as CACHE_KIND
from mebt.token_cache import background_code, build_or_load
from mebt.video_io import save_filmstrip, save_video

EVAL_SEED = 1234     # the held-out masks are the same in every run and at every eval: CEs are comparable
NUM_SAMPLES = 4      # videos per sample GIF (a 2x2 grid)
SAMPLE_SEED = 0      # the same noise at every sample write, so GIFs over training show the model, not the noise
LOG_EVERY = 10       # a training line in metrics.jsonl every this many steps (evals always log); the host reads the
                     # device's loss only then, so a GPU step is never stalled waiting for the previous one


def lr_at(step: int, tc: TrainConfig) -> float:
    """Linear warm-up to tc.lr, then cosine decay to tc.lr * tc.min_lr_ratio at the last step."""
    warmup = min(tc.warmup_steps, tc.transformer_steps // 10)   # short runs (tests, smoke runs) still reach the peak
    if step < warmup:
        return tc.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, tc.transformer_steps - warmup)   # 0 -> 1 over the decay
    return tc.lr * (tc.min_lr_ratio + (1 - tc.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def token_caches(cfg: Config, tokenizer, tokenizer_fingerprint: str, paths: RunPaths, data_dir: str | None,
                 dist: Dist, workers: int | None = None) -> dict[str, torch.Tensor]:
    """{"train", "eval"}: (num_clips, t, h, w) compact int tensors of full-length clips, encoded once.

    The cache key is the tokenizer's fingerprint + the data config (+ folder): change either and it rebuilds.
    workers: DataLoader processes reading the clips (default: mebt.video_folder.loader_workers)."""
    # encoding is gradient-free but clips are full length: keep about as many frames per batch as in training
    batch = max(1, cfg.train.tokenizer_batch_size * cfg.train.tokenizer_clip_frames // cfg.data.frames)
    caches = {}
    for split in ("train", "eval"):
        if dist.is_main:   # one rank encodes and writes; the others read the file once it exists
            key = {"tokenizer": tokenizer_fingerprint, "data": dataclasses.asdict(cfg.data), "split": split,
                   "data_dir": os.path.abspath(data_dir) if data_dir else None}
            dataset = build_dataset(cfg.data, split, data_dir)
            caches[split] = build_or_load(paths.cache(split), tokenizer, dataset, key, batch, dist.device,
                                          num_workers=workers)
    barrier(dist)
    if not dist.is_main:
        caches = {split: load_checkpoint(paths.cache(split), CACHE_KIND)["tokens"] for split in ("train", "eval")}
    return caches


@torch.no_grad()
def heldout_cross_entropy(model: MeBT, tokens: torch.Tensor, cfg: Config, dtype: str, dist: Dist) -> float:
    """Masked-token cross-entropy (nats) on full-length held-out clips at the fixed ratio eval_mask_ratio."""
    was_training = model.training
    model.eval()   # no dropout: the same weights always give the same number
    generator = torch.Generator().manual_seed(EVAL_SEED)
    n, batch = math.prod(cfg.model.grid), cfg.train.batch_size
    total, count = torch.zeros((), dtype=torch.float64, device=dist.device), 0   # summed on the device: one sync
    for index, first in enumerate(range(0, len(tokens), batch)):
        clips = tokens[first:first + batch].long().flatten(1)                       # (b, N) full clips
        positions = torch.arange(n).expand(len(clips), n)                           # (b, N)
        context_pos, target_pos = sample_split(positions, cfg.model.mask_schedule, generator,
                                               ratio=cfg.train.eval_mask_ratio)
        if index % dist.world_size != dist.rank:   # every rank draws every split (same generator), evaluates its share
            continue
        targets = clips.gather(1, target_pos).to(dist.device)                       # (b, Nm)
        with autocast(dist.device, dtype):
            logits = model(clips.gather(1, context_pos).to(dist.device), context_pos.to(dist.device),
                           target_pos.to(dist.device))                              # (b, Nm, V)
        total += masked_token_loss(logits, targets).double() * targets.numel()      # fp32 mean -> sum over targets
        count += targets.numel()
    model.train(was_training)
    total, count = sum_across([total.item(), count], dist)
    return total / max(count, 1)


def write_samples(model: MeBT, tokenizer, cfg: Config, samples_dir: str, name: str, device) -> str:
    """Decode NUM_SAMPLES full-length videos; write <name>.gif and a <name>.png filmstrip; return the GIF path."""
    generator = torch.Generator(device).manual_seed(SAMPLE_SEED)
    videos = generate_videos(model, tokenizer, NUM_SAMPLES, generator=generator,
                             **sampling_settings(cfg.train, math.prod(cfg.model.grid)))
    gif = os.path.join(samples_dir, f"{name}.gif")
    save_video(gif, videos)                                                        # (B, 3, T, H, W) as a grid
    save_filmstrip(os.path.join(samples_dir, f"{name}.png"), videos, every=max(1, videos.shape[2] // 16))
    return gif


def training_batch(cache: torch.Tensor, step: int, schedule: Curriculum, cfg: Config, generator: torch.Generator,
                   length_generator: torch.Generator):
    """One step's data: random cached clips, the curriculum's window of each, and a random context/target split.

    The window length T is drawn from length_generator, which every rank seeds alike (shared_generator): under DDP
    each step waits for the slowest rank, so all ranks train on the same T. The clips, window starts and masks
    come from `generator`, which differs per rank (step_generator).

    cache: (num_clips, t_clip, h, w) tokens. A model whose grid is as long as the clip (MeBT) sees each window at
    its absolute positions (the curriculum keeps them, as the authors do). A model with a shorter grid (t' latent
    frames, e.g. the sliding-window baseline) trains on random windows of the whole clip, re-indexed so that
    every window starts at time 0: the model knows only "frame k of the window", which is what it will be asked
    to extend when it slides along a long video.

    Returns context_tokens (B, Nc), context_pos (B, Nc), target_pos (B, Nm), targets (B, Nm): all long, CPU."""
    batch_size = cfg.train.batch_size
    length = schedule.sample_length(step, length_generator)                                   # T, equal on all ranks
    window = Curriculum(length, 1.0, enabled=False)   # a disabled curriculum cuts windows of exactly its t_max
    positions = window.sample_window(step, batch_size, tuple(cache.shape[1:]), generator)     # (B, T*h*w) in the clip
    clips = torch.randint(len(cache), (batch_size,), generator=generator)                     # (B,)
    clip_tokens = cache[clips].long().flatten(1).gather(1, positions)                         # (B, T*h*w)
    if cfg.model.grid[0] < cache.shape[1]:
        positions = positions - positions[:, :1]   # window model: a window's first frame is frame 0 (raster order)
    # split the window's slots, then look up the positions and tokens of each half
    slots = torch.arange(positions.shape[1]).expand_as(positions)                             # (B, T*h*w)
    prob = cfg.model.frame_split_prob   # at 0 nothing is drawn: the random stream of a run is what it was before
    if prob > 0 and length >= 2 and torch.rand((), generator=generator) < prob:
        frame_split = sample_frame_split(length, cache.shape[2] * cache.shape[3], generator)   # h*w slots per frame
        context_slot, target_slot = (s.expand(batch_size, -1) for s in frame_split)
    else:
        context_slot, target_slot = sample_split(slots, cfg.model.mask_schedule, generator)
    return (clip_tokens.gather(1, context_slot), positions.gather(1, context_slot), positions.gather(1, target_slot),
            clip_tokens.gather(1, target_slot))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU tensor on `device`; to CUDA from pinned (page-locked) memory, so the copy does not block the host."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch, lr: float, grad_clip: float,
               device: torch.device, dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on batch = training_batch(...) (CPU tensors); returns (loss, gradient norm) as 0-dim
    fp32 tensors on `device`, never read back here: the host can queue the next step while this one runs."""
    context, context_pos, target_pos, targets = (to_device(t, device) for t in batch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, dtype):
        logits = model(context, context_pos, target_pos)                                  # (B, Nm, V)
    loss = masked_token_loss(logits, targets)                                              # fp32 under bf16 too
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)                      # a device tensor
    optimizer.step()
    return loss.detach(), grad_norm


def compile_model(model: torch.nn.Module, backend: str = "inductor") -> torch.nn.Module:
    """torch.compile for training, with symbolic sizes (dynamic=True): T, Nc and Nm change every step, and a
    graph per shape would recompile for most steps. Sizes 0 and 1 would still get graphs of their own; training
    keeps both Nc and Nm >= 2 (mebt.masking), so one graph serves the whole run (under DDP: one per gradient
    bucket). backend: tests count graphs with "eager" (the same graphs, no code generation)."""
    # Nc == Nm happens (a 50% split, a whole-frame split of an even window); "duck sizing" would then make the two
    # one symbol, and the first Nc != Nm batch would compile a second graph. Off: every size is its own symbol.
    if hasattr(fx_config, "use_duck_shape"):
        fx_config.use_duck_shape = False
    return torch.compile(model, dynamic=True, backend=backend)


class NonFiniteWatch:
    """Remembers, on the device, the first step whose loss or gradient norm was not finite: no host sync per step.
    check() reads it back (one sync) and raises LossNotFinite; call it before anything is saved."""

    def __init__(self, device: torch.device):
        self.step = torch.zeros((), dtype=torch.long, device=device)   # 0 = every step so far was finite
        self.values = torch.zeros(2, device=device)                    # (loss, grad norm) at that step

    def update(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor) -> None:
        values = torch.stack([loss.float(), grad_norm.float()])           # (2,)
        first = (self.step == 0) & ~values.isfinite().all()               # () bool: the first bad step
        self.step = torch.where(first, step, self.step)
        self.values = torch.where(first, values, self.values)

    def check(self, dist: Dist, kept: str) -> None:
        step = int(max_across(self.step, dist))   # under DDP a NaN loss anywhere makes every gradient NaN
        if step:
            loss, grad_norm = self.values.tolist()
            what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {grad_norm}"
            raise LossNotFinite(f"transformer {what} at step {step}: stopped ({kept}); try a lower --lr")


def train_transformer(cfg: Config, out_dir: str, *, data_dir: str | None = None, seed: int = 0,
                      resume: bool = False, dtype: str = "fp32", compile: bool = False, curriculum: bool = True,
                      dist: Dist = Dist(), workers: int | None = None, keep_every: int = 0) -> MeBT:
    """Train (or resume) MeBT on the tokens of OUT/tokenizer.pt; returns the model in eval mode.
    keep_every > 0 also keeps a copy of the checkpoint every keep_every steps, as OUT/mebt_step{N}.pt (the
    checkpoints of one run along its training, e.g. to score quality against training steps).

    Raises Stopped after saving a checkpoint on Ctrl-C / SIGTERM, LossNotFinite on a NaN/inf loss."""
    paths, tc, device = RunPaths(out_dir), cfg.train, dist.device
    if not os.path.exists(paths.tokenizer):
        raise FileNotFoundError(f"no tokenizer at {paths.tokenizer}: run --stage tokenizer first")
    refuse_overwrite(paths.mebt, resume)
    tokenizer, tokenizer_cfg, tokenizer_fp = load_tokenizer(paths.tokenizer, device)
    check_tokenizer_matches(tokenizer_cfg.tokenizer, cfg, paths.tokenizer)

    torch.manual_seed(seed)   # the initial weights depend on --seed only (DDP then copies rank 0's to all ranks)
    raw_model = MeBT(cfg.model).to(device)
    optimizer = torch.optim.AdamW(raw_model.optim_groups(tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas),
                                  fused=device.type == "cuda")   # one kernel for all parameters on a GPU
    start, last_saved = 0, None
    if os.path.exists(paths.mebt):   # --resume (refuse_overwrite passed)
        payload = load_checkpoint(paths.mebt, "mebt")
        saved = Config.from_dict(payload["config"]).model
        if saved != cfg.model:
            raise ValueError(f"{paths.mebt} was trained with a different model config ({saved}); "
                             "use the same --preset, or another --out-dir")
        if payload["tokenizer"]["fingerprint"] != tokenizer_fp:
            raise ValueError(f"{paths.mebt} was trained on other tokenizer weights than {paths.tokenizer}: "
                             "choose another --out-dir for a new transformer")
        raw_model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
        start = last_saved = payload["step"]
        if start >= tc.transformer_steps:
            if dist.is_main:
                print(f"transformer: {paths.mebt} already trained for {start} steps; nothing to do")
            return raw_model.eval()

    caches = token_caches(cfg, tokenizer, tokenizer_fp, paths, data_dir, dist, workers)
    for split, tokens in caches.items():   # checked once here: the model reads no values back during a step
        check_indices(paths.cache(split), tokens, cfg.model.vocab_size, "codebook indices")
    # the flat background's code, if the data has one: stored with the config, so every later draw can sharpen the
    # other codes (TrainConfig.sample_foreground_temperature) without the cache
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        tc, sample_background_code=background_code(caches["train"], cfg.model.vocab_size)))
    tc = cfg.train
    t_max, h, w = cfg.model.grid
    schedule = Curriculum.from_total_steps(t_max, tc.transformer_steps, full_at=tc.curriculum_full_at,
                                           spread=tc.curriculum_spread, enabled=tc.curriculum and curriculum)
    model = wrap(raw_model, dist)
    if compile:
        model = compile_model(model)
    log = MetricsLog(paths.metrics, dist.is_main)
    tokenizer_record = {"path": os.path.abspath(paths.tokenizer), "config": tokenizer_cfg.to_dict(),
                        "fingerprint": tokenizer_fp}

    def save(step: int, path: str = paths.mebt) -> None:
        nonlocal last_saved
        if dist.is_main:
            save_checkpoint(path, {"kind": "mebt", "model": raw_model.state_dict(),
                                   "optimizer": optimizer.state_dict(), "step": step, "rng": rng_state(),
                                   "config": cfg.to_dict(), "tokenizer": tokenizer_record})
        if path == paths.mebt:
            last_saved = step

    if dist.is_main:
        print(f"transformer: {raw_model.num_params() / 1e6:.2f}M parameters, {len(caches['train'])} cached clips of "
              f"{t_max}x{h}x{w} tokens, batch {tc.batch_size} x {dist.world_size} process(es), "
              f"curriculum {'on' if schedule.enabled else 'off'}, steps {start}->{tc.transformer_steps}")
    warn_if_cpu_busy(dist)   # before the first step: a busy CPU makes every step slow
    t0, eval_ce = time.time(), float("nan")
    watch, tokens_since, tick = NonFiniteWatch(device), 0, time.time()

    def kept() -> str:
        return f"{paths.mebt} keeps step {last_saved}" if last_saved is not None else "no checkpoint was written yet"

    bar = tqdm(total=tc.transformer_steps, initial=start, desc="transformer", disable=not dist.is_main,
               dynamic_ncols=True)
    raw_model.train()
    with GracefulStop() as stop, bar:   # as a context, the bar ends its line before an exception's message
        for step in range(start, tc.transformer_steps):
            # one process sees its own flag for free; ranks agree by an all-reduce (a sync) every LOG_EVERY steps
            if (not dist.enabled or step % LOG_EVERY == 0) and any_rank([stop.requested], dist)[0]:
                watch.check(dist, kept())   # never save weights a non-finite step has touched
                save(step)
                raise Stopped(f"transformer stopped at step {step}: saved {paths.mebt}; add --resume to continue")
            generator = step_generator(seed, step, dist.rank)   # clips and masks: (seed, step, rank)
            batch = training_batch(caches["train"], step, schedule, cfg, generator, shared_generator(seed, step))
            lr = lr_at(step, tc)
            loss, grad_norm = train_step(model, optimizer, batch, lr, tc.grad_clip, device, dtype)
            watch.update(step + 1, loss, grad_norm)
            done = step + 1
            window_tokens = batch[1].shape[1] + batch[2].shape[1]                  # Nc + Nm = T*h*w
            tokens_since += tc.batch_size * window_tokens * dist.world_size
            bar.update(1)
            evaluate = done % tc.eval_every == 0 or done == tc.transformer_steps
            sample = bool(tc.sample_every) and done % tc.sample_every == 0
            keep = bool(keep_every) and done % keep_every == 0
            if done % LOG_EVERY and not (evaluate or sample or keep):
                continue   # nothing is read back from the device on the other steps
            watch.check(dist, kept())
            loss_value, grad_value = loss.item(), grad_norm.item()
            tokens_per_s, tokens_since, tick = tokens_since / (time.time() - tick), 0, time.time()   # since the last look
            bar.set_postfix(loss=f"{loss_value:.3f}", T=window_tokens // (h * w), tok_s=f"{tokens_per_s:.0f}",
                            eval=f"{eval_ce:.3f}")
            if done % LOG_EVERY == 0:
                log.write(stage="transformer", step=done, loss=loss_value, lr=lr, T=window_tokens // (h * w),
                          tokens_per_s=tokens_per_s, grad_norm=grad_value)
            if evaluate:
                eval_ce = heldout_cross_entropy(raw_model, caches["eval"], cfg, dtype, dist)
                log.write(stage="transformer", step=done, eval_ce=eval_ce, eval_mask_ratio=tc.eval_mask_ratio)
                save(done)
                tick = time.time()   # the evaluation is not training time
            if keep:   # a snapshot that later evaluations do not overwrite (same contents as a resumable checkpoint)
                save(done, os.path.join(out_dir, f"mebt_step{done}.pt"))
                tick = time.time()
            if sample and dist.is_main:
                write_samples(raw_model, tokenizer, cfg, paths.samples, f"step_{done}", device)
                tick = time.time()
    if dist.is_main:
        train_time = time.time() - t0
        gif = write_samples(raw_model, tokenizer, cfg, paths.samples, "final", device)
        print(f"transformer: {tc.transformer_steps - start} steps in {train_time:.0f}s, held-out CE {eval_ce:.3f} "
              f"nats/token at mask ratio {tc.eval_mask_ratio} -> {paths.mebt}; samples {gif} "
              f"({time.time() - t0 - train_time:.0f}s)")
    barrier(dist)   # every rank returns once the run is complete on disk
    return raw_model.eval()
