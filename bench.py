"""Benchmarks: what MeBT costs next to full attention and an autoregressive transformer, and how consistent
its long samples stay on the synthetic data.

efficiency: one training step (forward + backward, batch 1, mask ratio 0.5 for the bidirectional models) at
  16..256 frames (t = frames / 4 latent frames x the preset's h x w tokens: tiny 8x8, paper 16x16), at the tiny
  and the paper width (the optimiser update is not part of the step). Per step: FLOPs (FlopCounterMode), activation memory (bytes autograd saves for
  backward, parameters excluded; peak allocated memory too on CUDA) and wall time, for
    mebt               MeBT (latent bottleneck, linear in the number of tokens)
    full               the full-attention bidirectional baseline, fused attention kernel (its FLOPs include
                       the backward pass recomputing the scores, so they read ~10% above the materialised ones)
    full-materialised  the same with an explicit (heads, N, N) score matrix
    ar                 a TATS-style causal transformer of the same width and depth (FLOPs of its causal
                       attention are counted as if full: FlopCounterMode does not halve them)
  and the time to generate one whole video: MeBT's 32-step iterative decoding (mebt.decoding.decode) vs the
  autoregressive model sampling token by token with its KV cache. Models are randomly initialised: cost does not
  depend on the weights. A shape over the device's budget (CPU_BUDGET / CUDA_BUDGET) is counted on the meta
  device only and marked "counted, not timed" (train_step_s and generate_s null).
  On a CPU PyTorch runs on --threads threads (default 1): on a shared 2-core machine two intra-op threads were
  ~40x slower than one, fighting the other processes for the cores.
quality: on the synthetic data, exact checks against the generator's ground truth (mebt/consistency.py):
  object persistence and motion plausibility per 16-frame window of 128 frames, for (i) held-out clips through
  the tokenizer (the ceiling), (ii) MeBT samples, all frames in one shot, (iii) a sliding-window baseline: the
  same model class trained on 16-frame clips, extended 2 latent frames (8 frames) at a time given the previous
  8 frames' tokens; plus MeBT's held-out masked-token cross-entropy at the fixed eval mask ratio. Real clips are
  judged against their true objects, samples against the objects in their own first frame (none = a failure).
  No FVD: it needs pretrained I3D weights, which cannot be downloaded here, and these numbers are no stand-in for it.

    python bench.py efficiency --quick                  # about a minute on a CPU
    python bench.py efficiency                          # every length, both widths (paper: counted only on a CPU)
    python bench.py quality --ckpt out/mebt.pt          # after `python train.py`; trains the baseline if needed
Writes bench/results/{efficiency,quality}-<device>.{json,png} (--out-dir elsewhere).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import time
import warnings

import numpy as np
import torch

from mebt.baselines import AutoregressiveBaseline, FullAttentionBaseline
from mebt.config import ModelConfig, get_preset
from mebt.consistency import WINDOW, motion_plausibility, object_persistence, reference_objects
from mebt.data import build_dataset
from mebt.decoding import cosine_schedule, decode
from mebt.distributed import Dist
from mebt.model import MeBT, masked_token_loss
from mebt.pipeline import generate_videos, load_mebt, load_tokenizer_for, sampling_settings
from mebt.profiling import count_train_step, masked_batch, sequence_batch
from mebt.train_transformer import heldout_cross_entropy, train_transformer

MODELS = ("mebt", "full", "full-materialised", "ar")
WIDTHS = ("tiny", "paper")
FRAMES = (16, 32, 64, 128, 256)
MASK_RATIO = 0.5                  # the bidirectional models' training step: half the tokens are targets
DECODE_STEPS = 32                 # K, MeBT's decoding steps for one whole video
CPU_BUDGET = dict(flops=1.5e11, saved_bytes=2 * 2**30)   # a few seconds a step on one core, a few GB at most
CUDA_BUDGET = dict(flops=3e14, memory_fraction=0.5)      # seconds a step; saved activations <= half the GPU
QUICK_FRAMES = 32                 # --quick times the tiny width only, up to this length
REPEATS, REPEAT_SECONDS = 3, 10.0  # median of up to 3 timed runs, fewer once they add up to 10 s
AR_WARMUP_TOKENS = 64             # the autoregressive warm-up: a short generation runs every kernel of a long one
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench", "results")


# ------------------------------------------------------------------------------------------------ efficiency

def model_config(width: str, frames: int) -> ModelConfig:
    """The preset's model with positional tables sized for `frames` (t = frames / temporal factor)."""
    cfg = get_preset(width)
    factor = cfg.tokenizer.temporal_downsample
    if frames % factor or frames < factor:
        raise ValueError(f"--frames: {frames} must be a positive multiple of {factor} (the temporal factor)")
    _, h, w = cfg.model.grid
    return dataclasses.replace(cfg.model, grid=(frames // factor, h, w))


def build(name: str, cfg: ModelConfig) -> torch.nn.Module:
    if name == "mebt":
        return MeBT(cfg)
    if name == "ar":
        return AutoregressiveBaseline(cfg)
    return FullAttentionBaseline(cfg, materialize=name == "full-materialised")


def batch_for(name: str, cfg: ModelConfig):
    """make_batch(device) for one training step on the whole (t, h, w) clip."""
    t = cfg.grid[0]
    return sequence_batch(cfg, t) if name == "ar" else masked_batch(cfg, t, mask_ratio=MASK_RATIO)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)   # CUDA kernels run asynchronously: wait before reading the clock


def median_seconds(fn, device: torch.device) -> float:
    """Median wall time of up to REPEATS calls of fn (stops early once they add up to REPEAT_SECONDS).
    The caller warms up first."""
    times: list[float] = []
    while len(times) < REPEATS and sum(times) < REPEAT_SECONDS:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def over_budget(cost: dict, device: torch.device) -> str | None:
    """Why a shape is too large to run here (None if it fits)."""
    if device.type == "cuda":
        memory = CUDA_BUDGET["memory_fraction"] * torch.cuda.get_device_properties(device).total_memory
        flops, saved = CUDA_BUDGET["flops"], memory
    else:
        flops, saved = CPU_BUDGET["flops"], CPU_BUDGET["saved_bytes"]
    if cost["flops"] > flops or cost["saved_bytes"] > saved:
        return f"over the {device.type} budget of {flops / 1e9:.0f} GFLOPs / {saved / 2**30:.1f} GiB saved per step"
    return None


def time_generation(name: str, model: torch.nn.Module, cfg: ModelConfig, device: torch.device) -> float:
    """Seconds to generate one whole (t, h, w) video: MeBT in DECODE_STEPS calls, AR in t*h*w calls."""
    model.eval()
    generator = torch.Generator(device).manual_seed(0)
    if name == "mebt":
        warm_up = lambda: decode(model, 1, cfg.grid, steps=1)                             # one call on every target
        run = lambda: decode(model, 1, cfg.grid, steps=DECODE_STEPS, generator=generator)
    else:
        warm_up = lambda: model.generate(1, AR_WARMUP_TOKENS)
        run = lambda: model.generate(1, math.prod(cfg.grid), generator=generator)
    with torch.inference_mode():
        warm_up()
        return median_seconds(run, device)


def measure(name: str, width: str, frames: int, device: torch.device, quick: bool) -> dict:
    """One row: counted on the meta device, then (if it fits and is not skipped by --quick) counted and timed."""
    cfg = model_config(width, frames)
    n = math.prod(cfg.grid)
    with torch.device("meta"):                                # exact shapes, no memory, no time
        meta_model = build(name, cfg)
    cost = count_train_step(meta_model, batch_for(name, cfg), torch.device("meta"))
    row = dict(model=name, width=width, frames=frames, tokens=n, train_flops=cost["flops"],
               train_saved_bytes=cost["saved_bytes"], train_step_s=None, generate_s=None,
               generate_calls={"mebt": len(cosine_schedule(n, DECODE_STEPS)), "ar": n}.get(name),
               cuda_max_memory_bytes=None, counted_on="meta", note=None)
    skip = over_budget(cost, device)
    if quick and skip is None and (width != "tiny" or frames > QUICK_FRAMES):
        skip = f"--quick times the tiny width up to {QUICK_FRAMES} frames only"
    if skip:
        row["note"] = f"counted, not timed ({skip})"
        return row
    torch.manual_seed(0)
    with torch.device(device):
        model = build(name, cfg)
    # counting on the real device doubles as the warm-up step (allocator, kernel selection)
    cost = count_train_step(model, batch_for(name, cfg), device)
    row.update(train_flops=cost["flops"], train_saved_bytes=cost["saved_bytes"], counted_on=device.type)
    inputs, targets = batch_for(name, cfg)(device)

    def train_step():
        masked_token_loss(model(*inputs), targets).backward()
        model.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        train_step()
        row["cuda_max_memory_bytes"] = torch.cuda.max_memory_allocated(device)   # weights + grads + activations
    row["train_step_s"] = median_seconds(train_step, device)
    if name in ("mebt", "ar"):
        row["generate_s"] = time_generation(name, model, cfg, device)
    return row


def run_efficiency(widths, frames, device: torch.device, quick: bool, out_dir: str) -> list[dict]:
    rows = []
    for width in widths:
        for length in frames:
            for name in MODELS:
                rows.append(measure(name, width, length, device, quick))
                r = rows[-1]
                print(f"  {name:18s} {width:5s} {length:4d} frames: {r['train_flops'] / 1e9:10.1f} GFLOPs "
                      f"{r['train_saved_bytes'] / 2**20:10.1f} MiB  step {fmt(r['train_step_s'])} s  "
                      f"generate {fmt(r['generate_s'])} s", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"efficiency-{device.type}.json")
    with open(path, "w") as file:
        json.dump(rows, file, indent=1)
    print_table(rows)
    plot_efficiency(rows, os.path.join(out_dir, f"efficiency-{device.type}.png"))
    print(f"wrote {path} and its .png")
    return rows


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict]) -> None:
    print(f"\n{'model':18s} {'width':5s} {'frames':>6s} {'tokens':>6s} {'GFLOPs':>10s} {'saved MiB':>10s} "
          f"{'step s':>8s} {'generate s':>10s}")
    for r in rows:
        print(f"{r['model']:18s} {r['width']:5s} {r['frames']:6d} {r['tokens']:6d} {r['train_flops'] / 1e9:10.1f} "
              f"{r['train_saved_bytes'] / 2**20:10.1f} {fmt(r['train_step_s']):>8s} {fmt(r['generate_s']):>10s}")
    for line in ratio_lines(rows):
        print(line)


def ratio_lines(rows: list[dict]) -> list[str]:
    """MeBT vs each baseline at each length (baseline / MeBT), and each model's growth 16 -> 128 / 256 frames."""
    index = {(r["model"], r["width"], r["frames"]): r for r in rows}
    lines = ["\nbaseline / MeBT (x = how many times MeBT's cost the baseline needs):"]
    for (name, width, frames), r in index.items():
        mebt = index.get(("mebt", width, frames))
        if name == "mebt" or mebt is None:
            continue
        parts = [f"memory x{r['train_saved_bytes'] / mebt['train_saved_bytes']:.2f}",
                 f"FLOPs x{r['train_flops'] / mebt['train_flops']:.2f}"]
        for key, label in (("train_step_s", "step time"), ("generate_s", "generation time")):
            if r[key] is not None and mebt[key] is not None:
                parts.append(f"{label} x{r[key] / mebt[key]:.2f}")
        lines.append(f"  {name:18s} {width:5s} {frames:4d} frames: " + ", ".join(parts))
    lines.append("growth with length (linear = the frames ratio):")
    for (name, width, frames), r in index.items():
        short = index.get((name, width, 16))
        if frames in (128, 256) and short is not None:
            lines.append(f"  {name:18s} {width:5s} 16->{frames} frames (linear x{frames // 16}): memory "
                         f"x{r['train_saved_bytes'] / short['train_saved_bytes']:.2f}, "
                         f"FLOPs x{r['train_flops'] / short['train_flops']:.2f}")
    return lines


def plot_efficiency(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")   # files only, no display
    import matplotlib.pyplot as plt

    colours = {"mebt": "C0", "full": "C1", "full-materialised": "C3", "ar": "C2"}
    styles = {"tiny": "-", "paper": "--"}
    panels = (("train_saved_bytes", 2**-20, "activation memory per step (MiB)"),
              ("train_flops", 1e-9, "GFLOPs per training step"),
              ("train_step_s", 1.0, "seconds (o: train step, s: generate one video)"))
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    for ax, (key, scale, label) in zip(axes, panels):
        keys = (key, "generate_s") if key == "train_step_s" else (key,)   # the time panel shows both
        for name in MODELS:
            for width, style in styles.items():
                for k in keys:
                    points = [(r["frames"], r[k] * scale) for r in rows
                              if r["model"] == name and r["width"] == width and r[k] is not None]
                    generation = k == "generate_s"
                    if points:
                        ax.plot(*zip(*points), style, marker="s" if generation else "o", color=colours[name],
                                alpha=0.5 if generation else 1.0,
                                label=f"{name} {width}" + (" generate" if generation else ""))
        if key != "train_step_s":   # a slope-1 guide through the cheapest shortest point
            lengths = sorted({r["frames"] for r in rows})
            lowest = min(r[key] * scale for r in rows if r["frames"] == lengths[0])
            ax.plot(lengths, [lowest * x / lengths[0] for x in lengths], ":", color="grey", label="linear in frames")
        ax.set(xscale="log", yscale="log", xlabel="frames", ylabel=label)
        ax.set_xscale("log", base=2)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"one training step, batch 1 (mask ratio {MASK_RATIO}); generation: MeBT K={DECODE_STEPS} vs "
                 "autoregressive with KV cache")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ quality

CARRY = 2          # latent frames (8 video frames) the sliding window carries over as context
BASELINE_DIR = "sliding16"   # where an in-process baseline is trained: beside the MeBT checkpoint


def window_scores(videos, references=None) -> dict:
    """Persistence and motion plausibility per 16-frame window, averaged over the videos.

    videos: (B, 3, T, H, W) or a list of (3, T, H, W); references: None (each video's own first frame lists its
    objects) or one reference per video, e.g. its VideoTruth (see mebt.consistency.frame_persistence).
    A video whose reference lists no object at all scores 0: an empty video would keep "every" object
    trivially, and the generator always draws at least one."""
    references = [None] * len(videos) if references is None else references
    objects = np.array([len(reference_objects(r, v)[0]) for v, r in zip(videos, references)])   # (B,)
    persistence = np.stack([object_persistence(v, r) for v, r in zip(videos, references)])   # (B, windows)
    persistence[objects == 0] = 0.0
    motion = np.stack([motion_plausibility(v) for v in videos])                                # nan: nothing judged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a window where no move could be judged stays nan
        motion_windows, motion_mean = np.nanmean(motion, 0), np.nanmean(motion)
    plain = lambda values: [None if math.isnan(v) else round(float(v), 4) for v in values]   # JSON has no NaN
    return dict(persistence=plain(persistence.mean(0)), motion=plain(motion_windows),
                persistence_mean=plain([persistence.mean()])[0], motion_mean=plain([motion_mean])[0],
                videos_fully_persistent=float((persistence == 1).all(1).mean()),
                reference_objects=float(objects.mean()), videos_without_objects=float((objects == 0).mean()))


def sliding_window_tokens(model: torch.nn.Module, batch_size: int, t_total: int, generator=None,
                          **decode_kwargs) -> torch.Tensor:
    """A (B, t_total, h, w) grid from a model trained on short windows of model.cfg.grid = (t_window, h, w):
    the first window decoded from nothing, then t_window - CARRY new latent frames at a time, each window given
    the previous CARRY latent frames as context."""
    t_window, h, w = model.cfg.grid
    if t_window <= CARRY:
        raise ValueError(f"sliding window: the baseline's grid {model.cfg.grid} needs more than {CARRY} latent frames")
    tokens = decode(model, batch_size, (t_window, h, w), generator=generator, **decode_kwargs)   # (B, t_window, h, w)
    while tokens.shape[1] < t_total:
        given = torch.full_like(tokens[:, :t_window], -1)          # (B, t_window, h, w), -1 = to generate
        given[:, :CARRY] = tokens[:, -CARRY:]                      # the last CARRY frames, at the window's start
        window = decode(model, batch_size, (t_window, h, w), given=given.flatten(1), generator=generator,
                        **decode_kwargs)
        tokens = torch.cat([tokens, window[:, CARRY:]], dim=1)
    return tokens[:, :t_total]


@torch.no_grad()
def pixels(tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """Token grids (B, t, h, w) -> videos (B, 3, T, H, W), one video at a time (full-resolution activations)."""
    device = next(tokenizer.parameters()).device
    return torch.cat([tokenizer.decode(t[None].to(device)).cpu() for t in tokens])


def sliding_baseline(args, cfg, payload, tokenizer_fp: str, device: torch.device):
    """The 16-frame model: --baseline-ckpt, or trained here (resumable) beside the MeBT checkpoint on the first
    16 frames of the same training videos, with the same tokenizer, for as many steps (or --baseline-steps)."""
    path = args.baseline_ckpt
    if path is None:
        run_dir = os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), BASELINE_DIR)
        record = payload["tokenizer"]
        beside = os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), os.path.basename(record["path"]))
        os.makedirs(run_dir, exist_ok=True)
        if not os.path.exists(os.path.join(run_dir, "tokenizer.pt")):   # the same tokenizer weights: same tokens
            source = record["path"] if os.path.isfile(record["path"]) else beside
            shutil.copy(source, os.path.join(run_dir, "tokenizer.pt"))
        steps = args.baseline_steps or payload["step"]
        _, h, w = cfg.model.grid
        window = dataclasses.replace(   # a 16-frame config: grid (4, h, w), no curriculum (DESIGN.md §4)
            cfg, data=dataclasses.replace(cfg.data, frames=WINDOW),
            model=dataclasses.replace(cfg.model, grid=(WINDOW // cfg.tokenizer.temporal_downsample, h, w)),
            train=dataclasses.replace(cfg.train, transformer_steps=steps, curriculum=False)).validate()
        print(f"quality: training the sliding-window baseline on {window.data.frames}-frame clips for {steps} steps "
              f"in {run_dir} (reused if already there)")
        train_transformer(window, run_dir, resume=True, dist=Dist(device=device))
        path = os.path.join(run_dir, "mebt.pt")
    model, base_cfg, base_payload = load_mebt(path, device)
    if base_payload["tokenizer"]["fingerprint"] != tokenizer_fp:
        raise ValueError(f"sliding-window baseline {path} was trained on other tokenizer weights than {args.ckpt}: "
                         "delete it, or pass --baseline-ckpt")
    if tuple(base_cfg.model.grid[1:]) != tuple(cfg.model.grid[1:]) or base_cfg.model.grid[0] <= CARRY:
        raise ValueError(f"--baseline-ckpt {path}: grid {base_cfg.model.grid} must be (t > {CARRY}, "
                         f"{cfg.model.grid[1]}, {cfg.model.grid[2]}) like {args.ckpt}")
    return model, path, base_payload["step"]


def run_quality(args, device: torch.device) -> dict:
    if args.baseline_steps is not None and args.baseline_steps < 1:
        raise ValueError(f"--baseline-steps {args.baseline_steps}: expected at least 1")
    model, cfg, payload = load_mebt(args.ckpt, device)
    if cfg.data.dataset != "synthetic":
        raise ValueError(f"--ckpt {args.ckpt} was trained on {cfg.data.dataset!r}: quality needs the synthetic data's "
                         "ground truth")
    if cfg.data.frames % WINDOW:
        raise ValueError(f"--ckpt {args.ckpt}: its {cfg.data.frames}-frame clips are not whole {WINDOW}-frame windows")
    tokenizer, _, tokenizer_fp = load_tokenizer_for(payload, args.ckpt, device)
    heldout = build_dataset(cfg.data, "eval")
    if not 1 <= args.num_videos <= len(heldout):
        raise ValueError(f"--num-videos {args.num_videos}: expected 1..{len(heldout)} (data.num_eval_videos)")
    _, h, w = cfg.model.grid
    fewest_unknown = (WINDOW // cfg.tokenizer.temporal_downsample - CARRY) * h * w   # a sliding window's new tokens
    decoding = sampling_settings(cfg.train, fewest_unknown)   # the checkpoint's own settings, for both models
    results = dict(checkpoint=os.path.abspath(args.ckpt), steps=payload["step"], num_videos=args.num_videos,
                   frames=cfg.data.frames, window=WINDOW, decoding=decoding, seconds={})

    start = time.perf_counter()
    with torch.no_grad():   # every held-out clip: the NLL uses them all, the ceiling the first num_videos
        tokens = torch.cat([tokenizer.encode(heldout[i][None].to(device)).cpu() for i in range(len(heldout))])
    results["heldout_nll"] = heldout_cross_entropy(model, tokens, cfg, "fp32", Dist(device=device))
    results["eval_mask_ratio"] = cfg.train.eval_mask_ratio
    real = pixels(tokenizer, tokens[:args.num_videos])
    results["seconds"]["tokenizer"] = time.perf_counter() - start

    start = time.perf_counter()
    generator = torch.Generator(device).manual_seed(args.seed)
    samples = generate_videos(model, tokenizer, args.num_videos, generator=generator, **decoding).cpu()
    results["seconds"]["mebt"] = time.perf_counter() - start

    baseline, results["baseline_checkpoint"], results["baseline_steps"] = sliding_baseline(
        args, cfg, payload, tokenizer_fp, device)
    start = time.perf_counter()
    generator = torch.Generator(device).manual_seed(args.seed)
    grid = sliding_window_tokens(baseline, args.num_videos, cfg.model.grid[0], generator=generator, **decoding)
    sliding = pixels(tokenizer, grid)
    results["seconds"]["sliding-window"] = time.perf_counter() - start

    truths = [heldout.truth(i) for i in range(args.num_videos)]   # the real clips are judged against their truth
    results["methods"] = {"tokenizer (held-out clips)": window_scores(real, truths), "mebt": window_scores(samples),
                          "sliding-window": window_scores(sliding)}
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, f"quality-{device.type}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"held-out masked-token NLL {results['heldout_nll']:.3f} nats/token at mask ratio {cfg.train.eval_mask_ratio}")
    for name, scores in results["methods"].items():
        print(f"{name:28s} persistence {scores['persistence']}  motion {scores['motion']}")
    plot_quality(results, os.path.join(args.out_dir, f"quality-{device.type}.png"))
    print(f"wrote {path} and its .png")
    return results


def plot_quality(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, scores in results["methods"].items():
        starts = [WINDOW * i for i in range(len(scores["persistence"]))]          # first frame of each window
        for ax, key in zip(axes, ("persistence", "motion")):
            values = [np.nan if v is None else v for v in scores[key]]
            ax.plot(starts, values, marker="o", label=name)
    for ax, label in zip(axes, ("object persistence", "motion plausibility")):
        ax.set(xlabel=f"first frame of the {WINDOW}-frame window", ylabel=label, ylim=(-0.05, 1.05),
               xlim=(-WINDOW / 4, results["frames"] - WINDOW * 3 / 4))
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{results['num_videos']} videos of {results['frames']} frames (exact ground-truth checks, not FVD)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ command line

def parse_list(flag: str, text: str, allowed=None, kind=str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected a comma-separated list of {kind.__name__}") from None
    if not values or (allowed is not None and set(values) - set(allowed)):
        raise ValueError(f"{flag} {text!r}: expected a comma-separated list of {', '.join(allowed or [kind.__name__])}")
    return values


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="MeBT benchmarks (see the docstring of bench.py).")
    sub = p.add_subparsers(dest="command", required=True)
    eff = sub.add_parser("efficiency", help="FLOPs, activation memory and time vs video length")
    eff.add_argument("--quick", action="store_true", help="time the tiny width up to 32 frames only (~1 minute)")
    eff.add_argument("--widths", default=",".join(WIDTHS), help="comma-separated presets: tiny,paper")
    eff.add_argument("--frames", default=",".join(map(str, FRAMES)), help="comma-separated video lengths")
    qual = sub.add_parser("quality", help="object persistence / motion per window on synthetic data")
    qual.add_argument("--ckpt", required=True, help="a MeBT checkpoint trained on the synthetic data (out/mebt.pt)")
    qual.add_argument("--baseline-ckpt", default=None, help="the 16-frame sliding-window model; default: train it")
    qual.add_argument("--baseline-steps", type=int, default=None, help="its training steps; default: as --ckpt's")
    qual.add_argument("--num-videos", type=int, default=8, help="videos per method")
    qual.add_argument("--seed", type=int, default=0, help="sampling seed")
    for s in (eff, qual):
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
        s.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch (see the docstring)")
        s.add_argument("--out-dir", default=RESULTS, help="where the JSON and PNG go")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads}: expected at least 1")
    torch.set_num_threads(args.threads)
    if args.command == "efficiency":
        widths = parse_list("--widths", args.widths, WIDTHS)
        frames = parse_list("--frames", args.frames, kind=int)
        for f in frames:
            model_config(widths[0], f)   # checks the length before any work
        run_efficiency(widths, frames, device, args.quick, args.out_dir)
    else:
        run_quality(args, device)


if __name__ == "__main__":
    main()
