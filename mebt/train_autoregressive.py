"""Train the autoregressive baseline (mebt/baselines.py) on windows of the token cache: next-token cross-entropy.

The same data and recipe as MeBT's stage 2 (mebt/train_transformer.py), so that the two compare fairly: the token
cache of the run's tokenizer, batch_size clips per step with a random window of the model's grid[0] latent frames
cut from each (the whole clip for a model as long as the clip), AdamW (decay on Linear weights only) with warm-up
and cosine decay (lr_at), gradient clipping, draws seeded by (seed, step), an atomic checkpoint every eval_every
steps with the held-out next-token cross-entropy, Ctrl-C / SIGTERM saves and stops. Re-running continues where the
checkpoint stopped (it is never overwritten by a fresh run), and refuses one trained on other tokenizer weights.

bench.py quality trains it beside a MeBT checkpoint (see benchmarks/baselines_train.py):
    python bench.py quality --ckpt out/mebt.pt
"""
from __future__ import annotations

import math
import os
import time

import torch
from tqdm import tqdm

from mebt.baselines import AutoregressiveBaseline
from mebt.checkpoint import load_checkpoint, save_checkpoint
from mebt.config import Config
from mebt.curriculum import Curriculum
from mebt.distributed import Dist, GracefulStop, Stopped, rng_state, set_rng_state, step_generator
from mebt.model import masked_token_loss, optim_groups
from mebt.pipeline import LossNotFinite, MetricsLog, RunPaths, check_tokenizer_matches, load_tokenizer
from mebt.train_transformer import LOG_EVERY, lr_at, token_caches

KIND = "autoregressive"             # the checkpoint's kind: load_checkpoint refuses a MeBT checkpoint here
CHECKPOINT = "autoregressive.pt"    # in the run folder, beside its tokenizer.pt and token caches


def windows(cache: torch.Tensor, positions: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """The tokens (B, t*h*w) of window positions (B, t*h*w) cut from cached clips (B,) of cache (N, T, h, w)."""
    return cache[clips].long().flatten(1).gather(1, positions)


@torch.no_grad()
def heldout_next_token_ce(model: AutoregressiveBaseline, cache: torch.Tensor, batch_size: int, device) -> float:
    """Mean next-token cross-entropy (nats) on the first window of every held-out clip: the same tokens each time."""
    was_training = model.training
    model.eval()
    t, h, w = model.cfg.grid
    total = 0.0
    for first in range(0, len(cache), batch_size):
        tokens = cache[first:first + batch_size, :t].long().flatten(1).to(device)   # (b, t*h*w)
        total += masked_token_loss(model(tokens), tokens).item() * len(tokens)
    model.train(was_training)
    return total / len(cache)


def train_autoregressive(cfg: Config, out_dir: str, *, seed: int = 0, dist: Dist = Dist()) -> AutoregressiveBaseline:
    """Train (or continue) the autoregressive model of cfg.model on OUT/tokenizer.pt's token cache for
    cfg.train.transformer_steps steps; writes OUT/autoregressive.pt and OUT/metrics.jsonl, returns it in eval mode.
    One process. Raises Stopped after saving on Ctrl-C / SIGTERM, LossNotFinite on a NaN/inf loss."""
    paths, tc, device = RunPaths(out_dir), cfg.train, dist.device
    path = os.path.join(out_dir, CHECKPOINT)
    if not os.path.exists(paths.tokenizer):
        raise FileNotFoundError(f"no tokenizer at {paths.tokenizer}: the autoregressive baseline trains on its tokens")
    tokenizer, tokenizer_cfg, tokenizer_fp = load_tokenizer(paths.tokenizer, device)
    check_tokenizer_matches(tokenizer_cfg.tokenizer, cfg, paths.tokenizer)
    torch.manual_seed(seed)   # the initial weights depend on the seed only
    model = AutoregressiveBaseline(cfg.model).to(device)
    optimizer = torch.optim.AdamW(optim_groups(model, tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas))
    start = 0
    if os.path.exists(path):   # continue it, if it is the same model on the same tokens
        payload = load_checkpoint(path, KIND)
        if Config.from_dict(payload["config"]).model != cfg.model:
            raise ValueError(f"{path} holds a different model config: delete it or choose another folder")
        if payload["tokenizer"]["fingerprint"] != tokenizer_fp:
            raise ValueError(f"{path} was trained on other tokenizer weights than {paths.tokenizer}: delete it")
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
        start = payload["step"]
        if start >= tc.transformer_steps:
            return model.eval()
    caches = token_caches(cfg, tokenizer, tokenizer_fp, paths, None, dist)
    t_window = cfg.model.grid[0]
    cut = Curriculum(t_window, 1.0, enabled=False)   # a disabled curriculum always cuts t_window latent frames
    record = {"path": os.path.abspath(paths.tokenizer), "config": tokenizer_cfg.to_dict(), "fingerprint": tokenizer_fp}
    log = MetricsLog(paths.metrics)

    def save(step: int) -> None:
        save_checkpoint(path, {"kind": KIND, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "step": step, "rng": rng_state(), "config": cfg.to_dict(), "tokenizer": record})

    print(f"autoregressive: {model.num_params() / 1e6:.2f}M parameters, windows of {t_window} latent frames from "
          f"{len(caches['train'])} cached clips, batch {tc.batch_size}, steps {start}->{tc.transformer_steps}")
    model.train()
    t0, eval_ce = time.time(), float("nan")
    with GracefulStop() as stop, tqdm(total=tc.transformer_steps, initial=start, desc="autoregressive",
                                      dynamic_ncols=True) as bar:
        for step in range(start, tc.transformer_steps):
            if stop.requested:
                save(step)
                raise Stopped(f"autoregressive stopped at step {step}: saved {path}; run again to continue")
            generator = step_generator(seed, step)   # this step's draws depend on (seed, step) only: resumable
            positions = cut.sample_window(step, tc.batch_size, tuple(caches["train"].shape[1:]), generator)
            clips = torch.randint(len(caches["train"]), (tc.batch_size,), generator=generator)     # (B,)
            tokens = windows(caches["train"], positions, clips).to(device)                         # (B, t*h*w)
            lr = lr_at(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = masked_token_loss(model(tokens), tokens)   # logits[:, i] predicts tokens[:, i] from the earlier
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip).item()
            if not (math.isfinite(loss.item()) and math.isfinite(grad_norm)):
                raise LossNotFinite(f"autoregressive loss became {loss.item()} at step {step + 1}: stopped "
                                    f"({path} keeps its last save)")
            optimizer.step()
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", eval=f"{eval_ce:.3f}")
            if done % LOG_EVERY == 0:
                log.write(stage="autoregressive", step=done, loss=loss.item(), lr=lr, grad_norm=grad_norm)
            if done % tc.eval_every == 0 or done == tc.transformer_steps:
                eval_ce = heldout_next_token_ce(model, caches["eval"], tc.batch_size, device)
                log.write(stage="autoregressive", step=done, eval_ce=eval_ce)
                save(done)
    print(f"autoregressive: {tc.transformer_steps - start} steps in {time.time() - t0:.0f}s, held-out next-token "
          f"CE {eval_ce:.3f} nats/token -> {path}")
    return model.eval()
