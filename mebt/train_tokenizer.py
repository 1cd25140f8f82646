"""Stage 1: train the VQ video tokenizer on short random clips; writes OUT/tokenizer.pt.

The tokenizer is convolutional, so it trains on clips of TrainConfig.tokenizer_clip_frames frames (random
temporal crops of the training videos) and later encodes full-length clips for the token cache.
Loss = reconstruction MSE + commitment; the codebook itself follows EMA updates (mebt/quantizer.py).
Every eval_every steps: PSNR of full-length held-out videos, a checkpoint, a line in OUT/metrics.jsonl.

Run it through train.py:
    python train.py --stage tokenizer --tokenizer-steps 100 --out-dir /tmp/tok
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import torch
from tqdm import tqdm

from mebt.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from mebt.clip_loader import ClipReader, batches, clip_loader
from mebt.config import Config
from mebt.cpu_load import warn_if_cpu_busy
from mebt.data import build_dataset
from mebt.distributed import (Dist, GracefulStop, Stopped, any_rank, barrier, rng_state, set_rng_state, step_generator,
                              sum_across, wrap)
from mebt.pipeline import LossNotFinite, MetricsLog, RunPaths, autocast, refuse_overwrite
from mebt.tokenizer import VQTokenizer, psnr
from mebt.video_folder import loader_workers

EVAL_VIDEOS = 8      # held-out videos (full length) for the PSNR: enough for a stable number, cheap on a CPU
LOG_EVERY = 10       # a training line in metrics.jsonl every this many steps (evals always log)


def random_clips(reader: ClipReader, batch_size: int, generator: torch.Generator) -> list[tuple[int, int]]:
    """A step's random temporal crops of random videos, as (video index, first frame) pairs."""
    videos = torch.randint(len(reader.dataset), (batch_size,), generator=generator).tolist()
    return [(i, int(torch.randint(reader.starts(i), (1,), generator=generator))) for i in videos]


def eval_videos(dataset, n: int) -> list[torch.Tensor]:
    """The first n held-out clips, always the same ones (full length), so PSNRs are comparable over time."""
    return [dataset.clip(*start) for start in dataset.clip_starts()[:n]]


@torch.no_grad()
def heldout_psnr(tokenizer: VQTokenizer, videos: list[torch.Tensor], dist: Dist) -> float:
    """Mean PSNR (dB) of reconstructions of full-length held-out videos; ranks split the videos."""
    was_training = tokenizer.training
    tokenizer.eval()   # eval mode: no EMA codebook updates from held-out data
    total = 0.0
    for video in videos[dist.rank::dist.world_size]:
        video = video[None].to(dist.device)                                   # (1, 3, T, H, W)
        total += psnr(tokenizer(video).recon, video)
    tokenizer.train(was_training)
    total, count = sum_across([total, len(videos[dist.rank::dist.world_size])], dist)
    return total / max(count, 1)


def train_tokenizer(cfg: Config, out_dir: str, *, data_dir: str | None = None, seed: int = 0, resume: bool = False,
                    dtype: str = "fp32", compile: bool = False, dist: Dist = Dist(), workers: int | None = None
                    ) -> VQTokenizer:
    """Train (or resume, or reuse a finished) tokenizer; returns it in eval mode on dist.device.
    `workers`: DataLoader processes reading the clips (default: video_folder.loader_workers).

    Raises Stopped after saving a checkpoint on Ctrl-C / SIGTERM, LossNotFinite on a NaN/inf loss."""
    paths, tc, device = RunPaths(out_dir), cfg.train, dist.device
    payload, start = None, 0
    if os.path.exists(paths.tokenizer):
        refuse_overwrite(paths.tokenizer, resume)
        payload = load_checkpoint(paths.tokenizer, "tokenizer")
        saved = Config.from_dict(payload["config"]).tokenizer
        if saved != cfg.tokenizer:
            raise ValueError(f"{paths.tokenizer} was trained with a different tokenizer config ({saved}); "
                             "use the same --preset, or another --out-dir")
        start = payload["step"]
    clip_frames = min(tc.tokenizer_clip_frames, cfg.data.frames)
    if start < tc.tokenizer_steps:   # data first: a wrong folder is reported before any model is built
        # Frame folders are read from disk: load a clip-long random window (already a random crop), not 128
        # frames. Synthetic videos are rendered whole (cheap) and cropped anywhere, so late frames are seen too.
        clip_data = dataclasses.replace(cfg.data, frames=clip_frames) if cfg.data.dataset != "synthetic" else cfg.data
        train_set = build_dataset(clip_data, "train", data_dir)
        heldout = eval_videos(build_dataset(cfg.data, "eval", data_dir), EVAL_VIDEOS)

    torch.manual_seed(seed)   # the initial weights depend on --seed only (DDP then copies rank 0's to all ranks)
    tokenizer = VQTokenizer(cfg.tokenizer).to(device)
    # Adam without weight decay: a small conv autoencoder does not need it, and the codebook is not a parameter
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=tc.tokenizer_lr)
    if payload is not None:   # --resume
        tokenizer.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
    if start >= tc.tokenizer_steps:   # finished: --stage all --resume goes straight to the transformer
        if dist.is_main:
            print(f"tokenizer: reusing {paths.tokenizer} (trained for {start} steps)")
        return tokenizer.eval()
    model = wrap(tokenizer, dist, broadcast_buffers=False)   # the quantizer all-reduces its codebook buffers itself
    if compile:
        model = torch.compile(model)
    log = MetricsLog(paths.metrics, dist.is_main)

    last_saved = start if payload is not None else None

    def save(step: int) -> None:
        nonlocal last_saved
        if dist.is_main:   # one writer; the other ranks hold identical weights
            state = tokenizer.state_dict()
            save_checkpoint(paths.tokenizer, {"kind": "tokenizer", "model": state, "optimizer": optimizer.state_dict(),
                                              "step": step, "rng": rng_state(), "config": cfg.to_dict(),
                                              "fingerprint": fingerprint(state)})
        last_saved = step

    if dist.is_main:
        n_params = sum(p.numel() for p in tokenizer.parameters())
        print(f"tokenizer: {n_params / 1e6:.2f}M parameters, {len(train_set)} training videos, clips of {clip_frames} "
              f"frames, batch {tc.tokenizer_batch_size} x {dist.world_size} process(es), steps {start}->{tc.tokenizer_steps}")
    reader = ClipReader(train_set, clip_frames)

    def draw(step: int) -> list[tuple[int, int]]:
        # step_generator also seeds the global RNGs (the model's own draws); with workers the loader draws steps
        # ahead, so keep the global state as the loop set it and use only the data generator
        saved = rng_state()
        generator = step_generator(seed, step, dist.rank)   # this step's data randomness: (seed, step, rank) only
        set_rng_state(saved)
        return random_clips(reader, tc.tokenizer_batch_size, generator)

    warn_if_cpu_busy(dist)   # before the first step: a busy CPU makes every step slow
    workers = loader_workers(train_set) if workers is None else workers
    stream = batches(clip_loader(train_set, clip_frames, draw, range(start, tc.tokenizer_steps), workers,
                                 pin_memory=device.type == "cuda" and workers > 0))
    t0, last_psnr = time.time(), float("nan")
    bar = tqdm(total=tc.tokenizer_steps, initial=start, desc="tokenizer", disable=not dist.is_main, dynamic_ncols=True)
    tokenizer.train()
    with GracefulStop() as stop, bar:   # as a context, the bar ends its line before an exception's message
        for step in range(start, tc.tokenizer_steps):
            if any_rank([stop.requested], dist)[0]:   # every rank stops at the same step
                save(step)
                raise Stopped(f"tokenizer stopped at step {step}: saved {paths.tokenizer}; add --resume to continue")
            tick = time.time()
            step_generator(seed, step, dist.rank)   # seeds this step's model randomness (its data: draw above)
            clips = next(stream).to(device, non_blocking=True)   # (B, 3, clip_frames, H, W)
            with autocast(device, dtype):
                out = model(clips)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            loss = out.loss.item()
            if any_rank([not math.isfinite(loss)], dist)[0]:
                kept = f"{paths.tokenizer} keeps step {last_saved}" if last_saved is not None else "no checkpoint was written yet"
                raise LossNotFinite(f"tokenizer loss became {loss} at step {step + 1}: stopped ({kept}); "
                                    "the preset's train.tokenizer_lr may be too high")
            optimizer.step()
            done = step + 1
            clips_per_s = tc.tokenizer_batch_size * dist.world_size / (time.time() - tick)
            train_psnr = psnr(out.recon, clips)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{train_psnr:.1f}", usage=f"{out.usage.item():.2f}",
                            clips_s=f"{clips_per_s:.1f}", heldout=f"{last_psnr:.1f}")
            if done % LOG_EVERY == 0:
                log.write(stage="tokenizer", step=done, loss=loss, recon_loss=out.recon_loss.item(),
                          psnr=train_psnr, usage=out.usage.item(), perplexity=out.perplexity.item(),
                          clips_per_s=clips_per_s)
            if done % tc.eval_every == 0 or done == tc.tokenizer_steps:
                last_psnr = heldout_psnr(tokenizer, heldout, dist)
                log.write(stage="tokenizer", step=done, eval_psnr=last_psnr, usage=out.usage.item(),
                          perplexity=out.perplexity.item())
                save(done)
    barrier(dist)   # the other ranks go on to read OUT/tokenizer.pt: wait until rank 0 has written it
    if dist.is_main:
        print(f"tokenizer: {tc.tokenizer_steps - start} steps in {time.time() - t0:.0f}s, held-out PSNR "
              f"{last_psnr:.2f} dB, codebook usage {out.usage.item():.2f} -> {paths.tokenizer}")
    return tokenizer.eval()
