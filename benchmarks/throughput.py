"""`python bench.py throughput`: how fast a preset trains and samples on this device, and how close it gets to
the hardware's peak.

Training: the optimiser step train.py runs (mebt.train_transformer.train_step: forward, fp32 loss, backward,
clipping, AdamW; compiled with --compile exactly as train.py --compile does) on full-length clips at mask ratio
0.5, the mean of the training schedule. Reported: median step time, tokens/s, FLOPs per step (FlopCounterMode,
counted on the meta device for the same shapes; forward + backward, the optimiser's few FLOPs per weight left
out), achieved TFLOP/s, MFU = FLOPs / step time / the device's dense peak for the dtype (PEAK_TFLOPS, or
--peak-tflops; on a CPU the peak is unknown unless given), and peak memory (torch.cuda.max_memory_allocated:
weights, gradients, AdamW state and activations). --batch-size max (CUDA) doubles the batch from the preset's
until a step runs out of memory, then times the largest that fitted.
Sampling: one whole video with the preset's own decoding settings (TrainConfig.sample_*: bootstrap + main steps
+ 2 x revise rounds, every model call counted) against the autoregressive baseline of the same width and depth
sampling token by token into its preallocated KV cache (mebt.baselines.AutoregressiveBaseline.generate). Both
run eagerly, weights in the benchmark's dtype; FLOPs per video are counted on the meta device (the autoregressive
count is one causal forward over the video, its attention counted as full: an upper bound).
A step or a video over the CPU budget is counted, not timed (the paper preset on a CPU). Models are randomly
initialised: cost does not depend on the weights.

    python bench.py throughput                                 # tiny preset, 128 frames, batch 8, fp32 (~1 min, CPU)
    python bench.py throughput --dtype bf16 --threads 2        # bf16 autocast on 2 cores
    python bench.py throughput --preset paper                  # on a CPU: counted, not timed
    python bench.py throughput --preset paper --dtype bf16 --compile --batch-size max --device cuda
Writes <out-dir>/throughput-<preset>-<frames>f-<dtype>[-compile]-<device>[-<threads>t].json (bench/results/ by
default), rewritten after each part so that a run cut short keeps what it measured.
"""
from __future__ import annotations

import datetime
import gc
import math
import os

import torch
import torch.nn as nn

from benchmarks.common import device_name, fmt, median_seconds, write_json
from mebt.baselines import AutoregressiveBaseline
from mebt.config import PRESETS, Config, get_preset
from mebt.decoding import decode
from mebt.model import MeBT
from mebt.pipeline import sampling_settings
from mebt.profiling import count_forward, count_train_step, masked_batch, sequence_batch
from mebt.train_transformer import compile_model, train_step

# (substring of torch.cuda.get_device_name, dense bf16 TFLOP/s, fp32 TFLOP/s without tensor cores: PyTorch keeps
# TF32 off for fp32 matmuls by default), from NVIDIA's data sheets; the first match wins, so specific names first
PEAK_TFLOPS = (("H200 NVL", 835, 60), ("H200", 989, 67), ("H100 NVL", 835, 60), ("H100 PCIe", 756, 51),
               ("H100", 989, 67), ("A100", 312, 19.5))
MASK_RATIO = 0.5                 # the mean of the uniform ratio schedule the presets train with
WARMUP_STEPS = 3                 # allocator, kernel selection, and compilation (the first compiled step)
CPU_BUDGET_FLOPS = 5e11          # a step or a video above this is counted, not timed, on a CPU (~10 s per 1e11)
MAX_BATCH = 1024                 # --batch-size max stops doubling here


def preset_config(preset: str, frames: int) -> Config:
    """The preset at `frames` video frames: its model's grid follows the clip's token grid."""
    cfg = get_preset(preset)
    factor = cfg.tokenizer.temporal_downsample
    if frames % factor or frames < factor:
        raise ValueError(f"--frames {frames}: expected a positive multiple of {factor} (the temporal factor)")
    cfg.data.frames = frames
    cfg.model.grid = cfg.token_grid
    return cfg.validate()


def peak_tflops(device: torch.device, dtype: str, override: float | None) -> tuple[float | None, str]:
    """(the device's dense peak in TFLOP/s for dtype, where the number comes from); (None, why) if unknown."""
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, "peak unknown on a CPU (pass --peak-tflops)"
    name = torch.cuda.get_device_name(device)
    for key, bf16, fp32 in PEAK_TFLOPS:
        if key in name:
            return (bf16 if dtype == "bf16" else fp32), f"table: {key} {dtype} dense"
    return None, f"peak unknown for {name!r} (pass --peak-tflops)"


class TrainBench:
    """One model and optimiser, stepped on fixed full-length batches of any size (CPU tensors, as training_batch
    returns them, so the host-to-device copy is part of the step)."""

    def __init__(self, cfg: Config, device: torch.device, dtype: str, compile: bool):
        self.cfg, self.device, self.dtype, tc = cfg, device, dtype, cfg.train
        torch.manual_seed(0)
        self.model = MeBT(cfg.model).to(device)
        self.optimizer = torch.optim.AdamW(self.model.optim_groups(tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas),
                                           fused=device.type == "cuda")   # as train_transformer builds it
        self.runner = compile_model(self.model) if compile else self.model

    def batch(self, batch_size: int):
        inputs, targets = masked_batch(self.cfg.model, self.cfg.model.grid[0], batch_size, MASK_RATIO)("cpu")
        return (*inputs, targets)

    def step(self, batch) -> None:
        train_step(self.runner, self.optimizer, batch, self.cfg.train.lr, self.cfg.train.grad_clip, self.device,
                   self.dtype)

    def measure(self, batch_size: int, repeats: int, warmup: int = WARMUP_STEPS) -> dict:
        """Median seconds of a step at this batch size (after `warmup` steps), and its peak memory on CUDA."""
        batch = self.batch(batch_size)
        for _ in range(warmup):
            self.step(batch)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        seconds = median_seconds(lambda: self.step(batch), self.device, repeats)
        memory = torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else None
        return dict(batch_size=batch_size, step_s=seconds, max_memory_bytes=memory)

    def probe(self, batch_size: int) -> dict | None:
        """One step to see whether this batch size fits in CUDA memory, then one timed: measure()'s row, or None."""
        try:
            return self.measure(batch_size, repeats=1, warmup=1)
        except torch.cuda.OutOfMemoryError:
            pass
        self.optimizer.zero_grad(set_to_none=True)   # outside the except block: the traceback's tensors are gone
        gc.collect()
        torch.cuda.empty_cache()
        return None


def clip_flops(cfg: Config) -> int:
    """FLOPs of one forward + backward on one full-length clip, counted on the meta device (no memory, no time).
    A batch of B clips costs exactly B times this: every operation is batched."""
    with torch.device("meta"):
        model = MeBT(cfg.model)
    batch = masked_batch(cfg.model, cfg.model.grid[0], 1, MASK_RATIO)
    return count_train_step(model, batch, torch.device("meta"))["flops"]


def train_row(measured: dict, flops: int, tokens: int, peak: float | None) -> dict:
    row = dict(measured, flops=flops, tokens=tokens * measured["batch_size"], tokens_per_s=None, tflops_per_s=None,
               mfu=None)
    if measured.get("step_s"):
        row.update(tokens_per_s=row["tokens"] / row["step_s"], tflops_per_s=flops / row["step_s"] / 1e12)
        row["mfu"] = row["tflops_per_s"] / peak if peak else None
    return row


class CountCalls(nn.Module):
    """A model that counts its forward calls (decode's bootstrap + main steps + revise passes)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.cfg, self.calls = model, model.cfg, 0

    def forward(self, *inputs):
        self.calls += 1
        return self.model(*inputs)


class ShapeRecorder(nn.Module):
    """Stands in for MeBT during decoding and records each call's (Nc, Nm): the shapes decode() really uses."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, context_tokens, context_pos, target_pos):
        self.shapes.append((context_pos.shape[1], target_pos.shape[1]))
        return torch.zeros(*target_pos.shape, 2)   # (B, Nm, 2): any logits; the schedule depends on counts only


def sampling_flops(cfg: Config, settings: dict) -> dict:
    """Model calls and FLOPs of one video: MeBT with these decoding settings, the autoregressive baseline.

    A MeBT forward's FLOPs are affine in (Nc, Nm): every projection and attention is linear in one of them (cross
    layers in Nc, read/write layers and the head in Nm, the rest constant). Three counts fit it exactly, a fourth
    at the largest call checks the fit, and the ~100 calls of a video then cost one sum, not ~100 counts (each
    FlopCounterMode pass over the paper model takes seconds)."""
    recorder, n = ShapeRecorder(), math.prod(cfg.model.grid)
    decode(recorder, 1, cfg.model.grid, device="cpu", **settings)
    with torch.device("meta"):
        mebt, ar = MeBT(cfg.model), AutoregressiveBaseline(cfg.model)

    def count(nc: int, nm: int) -> int:
        ids = lambda k: torch.zeros(1, k, dtype=torch.long, device="meta")   # (1, k): only the shape matters
        return count_forward(mebt, (ids(nc), ids(nc), ids(nm)))
    base = count(1, 1)
    per_nc, per_nm = count(2, 1) - base, count(1, 2) - base
    fit = lambda nc, nm: base + per_nc * (nc - 1) + per_nm * (nm - 1)
    largest = max(recorder.shapes, key=sum)
    if fit(*largest) != count(*largest):
        raise RuntimeError(f"MeBT's FLOPs are not affine in (Nc, Nm) at {largest}: the model changed; count each call")
    (tokens,), _ = sequence_batch(cfg.model, cfg.model.grid[0])(torch.device("meta"))
    return dict(mebt_calls=len(recorder.shapes), mebt_flops=sum(fit(*shape) for shape in recorder.shapes),
                ar_calls=n, ar_flops_upper_bound=count_forward(ar, (tokens,)))


def time_sampling(cfg: Config, device: torch.device, dtype: str, settings: dict, calls: int) -> dict:
    """Seconds for one video: MeBT with the preset's decoding, the autoregressive baseline with its KV cache."""
    weights = torch.bfloat16 if dtype == "bf16" else torch.float32   # inference: both models entirely in dtype
    torch.manual_seed(0)
    mebt = CountCalls(MeBT(cfg.model).to(device, weights)).eval()
    ar = AutoregressiveBaseline(cfg.model).to(device, weights).eval()
    generator = torch.Generator(device).manual_seed(0)
    n = math.prod(cfg.model.grid)
    with torch.inference_mode():
        decode(mebt, 1, cfg.model.grid, steps=1, context_temperature=1.0, bootstrap=0, revise=0,
               revise_temperature=1.0)                                        # warm-up: one call on every target
        mebt.calls = 0
        mebt_s = median_seconds(lambda: decode(mebt, 1, cfg.model.grid, generator=generator, **settings), device)
        runs = mebt.calls // calls
        ar.generate(1, min(64, n))                                            # warm-up: every kernel of a long run
        ar_s = median_seconds(lambda: ar.generate(1, n, generator=generator), device)
    if mebt.calls != runs * calls:
        raise RuntimeError(f"decode made {mebt.calls / runs} calls per video, the settings promise {calls}")
    return dict(mebt_s=mebt_s, ar_s=ar_s, speedup=ar_s / mebt_s)


def run_throughput(args, device: torch.device) -> dict:
    cfg = preset_config(args.preset, args.frames)
    if args.batch_size == "max" and device.type != "cuda":
        raise ValueError("--batch-size max probes GPU memory: it needs --device cuda")
    tokens = math.prod(cfg.model.grid)
    peak, peak_source = peak_tflops(device, args.dtype, args.peak_tflops)
    name = f"throughput-{args.preset}-{args.frames}f-{args.dtype}{'-compile' if args.compile else ''}-" \
           f"{device_name(device)}" + (f"-{args.threads}t" if device.type == "cpu" else "")
    path = os.path.join(args.out_dir, name + ".json")
    result = dict(preset=args.preset, frames=args.frames, tokens_per_clip=tokens, dtype=args.dtype,
                  compile=args.compile, device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                  threads=torch.get_num_threads(), torch=torch.__version__, date=datetime.date.today().isoformat(),
                  peak_tflops=peak, peak_source=peak_source, train=[], probe=[], sampling=None, notes=[])
    print(f"{args.preset}: {args.frames} frames = {'x'.join(map(str, cfg.model.grid))} tokens, {args.dtype}"
          f"{', compiled' if args.compile else ''}, on {result['device']}; peak: "
          f"{f'{peak} TFLOP/s ({peak_source})' if peak else peak_source}", flush=True)

    # -------- sampling first: it is short on a GPU, and it must not wait for a compile
    settings = sampling_settings(cfg.train, tokens)
    counted = sampling_flops(cfg, settings)
    result["sampling"] = dict(settings, **counted)
    if device.type == "cpu" and max(counted["mebt_flops"], counted["ar_flops_upper_bound"]) > CPU_BUDGET_FLOPS:
        result["notes"].append("sampling counted, not timed (over the CPU budget)")
    elif not args.no_sampling:
        result["sampling"].update(time_sampling(cfg, device, args.dtype, settings, counted["mebt_calls"]))
    write_json(path, result)
    print_sampling(result["sampling"])

    # -------- training
    start = cfg.train.batch_size if args.batch_size in (None, "max") else args.batch_size
    per_clip = clip_flops(cfg)
    if device.type == "cpu" and per_clip * start > CPU_BUDGET_FLOPS:
        result["train"].append(train_row(dict(batch_size=start, step_s=None), per_clip * start, tokens, peak))
        result["notes"].append("training step counted, not timed (over the CPU budget)")
        print_train(result["train"][-1], "counted")
    else:
        sizes = [start]
        if args.batch_size == "max":   # an eager probe (a compiled step needs less memory, not more), timed once
            probe, b, row = TrainBench(cfg, device, args.dtype, compile=False), start, None
            while b <= MAX_BATCH and (row := probe.probe(b)) is not None:
                result["probe"].append(dict(train_row(row, per_clip * b, tokens, peak), fits=True))
                write_json(path, result)
                print_train(result["probe"][-1], "eager")
                b *= 2
            result["probe"].append(dict(batch_size=b, fits=False))
            del probe, row
            gc.collect()
            torch.cuda.empty_cache()
            largest = b // 2
            if largest < start:
                raise ValueError(f"--batch-size max: the preset's batch {start} does not fit in GPU memory")
            sizes = [start] if largest == start else [start, largest]   # the preset's batch, and the largest
        bench = TrainBench(cfg, device, args.dtype, args.compile)
        for i, b in enumerate(sizes):   # sizes share one compiled graph (symbolic sizes): one compile, at the first
            measured = bench.measure(b, args.steps, warmup=WARMUP_STEPS if i == 0 else 1)
            result["train"].append(train_row(measured, per_clip * b, tokens, peak))
            write_json(path, result)
            print_train(result["train"][-1], "compiled" if args.compile else "eager")
    write_json(path, result)
    for note in result["notes"]:
        print(note)
    print(f"wrote {path}")
    return result


def print_train(r: dict, how: str) -> None:
    memory = f"{r['max_memory_bytes'] / 2**30:.1f} GiB" if r.get("max_memory_bytes") else "-"
    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "- (peak unknown)"
    print(f"  train {how} batch {r['batch_size']:4d}: {r['flops'] / 1e12:9.3f} TFLOP/step  step {fmt(r.get('step_s'))} s  "
          f"{fmt(r['tokens_per_s'], 0)} tokens/s  {fmt(r['tflops_per_s'], 2)} TFLOP/s  MFU {mfu}  memory {memory}",
          flush=True)


def print_sampling(s: dict) -> None:
    print(f"  sample one video: MeBT {s['mebt_calls']} calls ({s['bootstrap']} bootstrap + {s['steps']} steps + "
          f"{s['revise']} x 2 revise), {s['mebt_flops'] / 1e12:.3f} TFLOP, {fmt(s.get('mebt_s'))} s | autoregressive "
          f"{s['ar_calls']} calls, <= {s['ar_flops_upper_bound'] / 1e12:.3f} TFLOP, {fmt(s.get('ar_s'))} s"
          + (f" | autoregressive / MeBT time: {s['speedup']:.1f}x" if s.get("speedup") else ""), flush=True)


def batch_size_flag(text: str | None) -> int | str | None:
    if text is None or text == "max":
        return text
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--batch-size {text!r}: expected a positive integer or 'max'")
    return int(text)


def add_parser(sub) -> None:
    p = sub.add_parser("throughput", help="training step time, tokens/s, MFU, memory; one sampled video vs AR")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny", help="whose model and decoding settings")
    p.add_argument("--frames", type=int, default=128, help="clip length in video frames (a multiple of 4)")
    p.add_argument("--batch-size", default=None,
                   help="clips per training step (default: the preset's); 'max' (CUDA): double the preset's until a "
                        "step runs out of memory, then time both the preset's and the largest that fitted")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: autocast training (as train.py --dtype bf16) and bf16 weights for sampling")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training step as train.py --compile does (the first steps compile)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (the median is reported)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's dense peak for --dtype, for the MFU (default: a table of GPUs; none for CPUs)")
    p.add_argument("--no-sampling", action="store_true", help="time the training step only (sampling is counted)")
    p.set_defaults(run=run)


def run(args, device: torch.device) -> dict:
    args.batch_size = batch_size_flag(args.batch_size)
    if args.steps < 1:
        raise ValueError(f"--steps {args.steps}: expected at least 1")
    if args.peak_tflops is not None and args.peak_tflops <= 0:
        raise ValueError(f"--peak-tflops {args.peak_tflops}: expected a positive number")
    return run_throughput(args, device)
