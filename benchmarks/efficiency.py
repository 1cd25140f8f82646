"""`python bench.py efficiency`: what one training step and one generated video cost for MeBT, full attention
and an autoregressive transformer, from 16 to 256 frames.

One training step (forward + backward, batch 1, mask ratio 0.5 for the bidirectional models) at 16..256 frames
(t = frames / 4 latent frames x the preset's h x w tokens: tiny 8x8, paper 16x16), at the tiny and the paper
width (the optimiser update is not part of the step). Per step: FLOPs (FlopCounterMode), activation memory
(bytes autograd saves for backward, parameters excluded; peak allocated memory too on CUDA) and wall time, for
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

    python bench.py efficiency --quick                  # about a minute on a CPU
    python bench.py efficiency                          # every length, both widths (paper: counted only on a CPU)
Writes bench/results/efficiency-<device>.{json,png} (--out-dir elsewhere).
"""
from __future__ import annotations

import dataclasses
import math
import os

import torch

from benchmarks.common import fmt, median_seconds, parse_list, write_json
from mebt.baselines import AutoregressiveBaseline, FullAttentionBaseline
from mebt.config import ModelConfig, get_preset
from mebt.decoding import cosine_schedule, decode
from mebt.model import MeBT, masked_token_loss
from mebt.profiling import count_train_step, masked_batch, sequence_batch

MODELS = ("mebt", "full", "full-materialised", "ar")
WIDTHS = ("tiny", "paper")
FRAMES = (16, 32, 64, 128, 256)
MASK_RATIO = 0.5                  # the bidirectional models' training step: half the tokens are targets
DECODE_STEPS = 32                 # K, MeBT's decoding steps for one whole video
# the main loop alone (no bootstrap, no revise: K calls); `bench.py throughput` times a preset's full decoding
LOOP_ONLY = dict(context_temperature=1.0, bootstrap=0, revise=0, revise_temperature=1.0)
CPU_BUDGET = dict(flops=1.5e11, saved_bytes=2 * 2**30)   # a few seconds a step on one core, a few GB at most
CUDA_BUDGET = dict(flops=3e14, memory_fraction=0.5)      # seconds a step; saved activations <= half the GPU
QUICK_FRAMES = 32                 # --quick times the tiny width up to this length
AR_WARMUP_TOKENS = 64             # the autoregressive warm-up: a short generation runs every kernel of a long one

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
        warm_up = lambda: decode(model, 1, cfg.grid, steps=1, **LOOP_ONLY)                # one call on every target
        run = lambda: decode(model, 1, cfg.grid, steps=DECODE_STEPS, generator=generator, **LOOP_ONLY)
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
    path = os.path.join(out_dir, f"efficiency-{device.type}.json")
    write_json(path, rows)
    print_table(rows)
    plot_efficiency(rows, os.path.join(out_dir, f"efficiency-{device.type}.png"))
    print(f"wrote {path} and its .png")
    return rows


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


def add_parser(sub) -> None:
    p = sub.add_parser("efficiency", help="FLOPs, activation memory and time vs video length")
    p.add_argument("--quick", action="store_true", help="time the tiny width up to 32 frames only (~1 minute)")
    p.add_argument("--widths", default=",".join(WIDTHS), help="comma-separated presets: tiny,paper")
    p.add_argument("--frames", default=",".join(map(str, FRAMES)), help="comma-separated video lengths")
    p.set_defaults(run=run)


def run(args, device: torch.device) -> list[dict]:
    widths = parse_list("--widths", args.widths, WIDTHS)
    frames = parse_list("--frames", args.frames, kind=int)
    for f in frames:
        model_config(widths[0], f)   # checks the length before any work
    return run_efficiency(widths, frames, device, args.quick, args.out_dir)
