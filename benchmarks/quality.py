"""`python bench.py quality`: long-video generation on the synthetic data, measured exactly against the generator's
truth: three tasks (benchmarks/tasks.py) x MeBT and two baselines (benchmarks/baselines_train.py), each at several
decoding budgets, every score a mean over videos with a 95% bootstrap confidence interval (mebt/stats.py).

  unconditional   persistence (share of frames showing frame 1's objects, and nothing else), consistency (share of
                  frames showing the video's own modal objects: no frame is special), motion (share of moves within
                  the speed limit), videos with no modal object, and diversity: the total variation distance between
                  the samples' and the training data's histograms of object count, colour and shape; and
                  persistence at the data's object counts (each frame-1 object count's mean, weighted as in the
                  data: simpler scenes than the data's are not rewarded); and why frames fail persistence (lost:
                  one of frame 1's objects missing or reshaped; reshaped: of those, still in sight in another
                  shape; extra: another colour drawn)
  prediction      16 real frames given: persistence of the *true* objects, their trajectory error in pixels and the
                  share of sightings missed (mebt/consistency.py), motion
  interpolation   the first and last 16 real frames given: the same; the autoregressive model gets the first only
Each score is per 16-frame window of generated frames, and their mean. Reference row: the same held-out clips
through the tokenizer (the ceiling). Budgets: model calls per video and decoding FLOPs (FlopCounterMode, the
transformer only: the tokenizer's decode is the same for every method) for each method and budget, so methods can
be compared at equal calls. Held-out clips: the checkpoint's eval split of the synthetic generator, extended to
--num-videos (never training videos). No FVD (it needs pretrained I3D weights); none of these numbers stands in for it.

    python bench.py quality --ckpt out/mebt.pt --threads 2     # 64 videos; trains the baselines if absent
    python bench.py quality --ckpt out/mebt.pt --quick         # 8 videos, short baselines: a smoke run
    python bench.py quality --ckpt out/mebt.pt --methods mebt --tasks unconditional   # one checkpoint, minutes
Writes bench/results/quality-<device>.json, quality-<device>.png and side-by-side-<device>.gif (--out-dir elsewhere).
"""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import torch

from benchmarks.baselines_train import autoregressive_model, sliding_window_model
from benchmarks.common import device_name, write_json
from benchmarks.quality_report import plot_quality, print_table, write_side_by_side
from benchmarks.tasks import (TASKS, Metered, Task, autoregressive_tokens, mebt_tokens, score_video,
                              sliding_window_tokens)
from mebt.consistency import WINDOW, Objects, object_histograms, true_tracks
from mebt.data import build_dataset
from mebt.distributed import Dist
from mebt.pipeline import load_mebt, load_tokenizer_for, sampling_settings
from mebt.stats import mean_ci, nanmean, pooled_ci, standardized_ci, total_variation
from mebt.train_transformer import heldout_cross_entropy

# Decoding budgets: changes to the checkpoint's own settings (bootstrap, steps, revise). MeBT's calls per video are
# bootstrap + steps + 2 x revise (tiny preset: 64 + 32 + 8 = 104). The sliding window pays that per window (15
# windows for 128 frames: 1,560 calls at the preset, 372 GFLOP per video, 1.5x MeBT's preset), so its budgets cut
# the calls per window to bring its calls down to MeBT's. The per-window plot and the GIF show each method's
# DEFAULT: MeBT's preset, and the sliding window at the calls closest to it (120).
MEBT_BUDGETS = (("no bootstrap", dict(bootstrap=0)), ("preset", {}), ("128 steps", dict(steps=128)))
SLIDING_BUDGETS = (("4 steps", dict(bootstrap=0, steps=4, revise=0)),
                   ("8 steps", dict(bootstrap=0, steps=8, revise=0)),
                   ("16 steps", dict(bootstrap=8, steps=16, revise=2)))
DEFAULT = {"mebt": "preset", "sliding-window": "8 steps"}
# --quick: a smoke run of the whole pipeline (every task and method), not a measurement: few videos, short
# baselines, and only the cheaper budgets
QUICK_VIDEOS, QUICK_BASELINE_STEPS, QUICK_BUDGETS = 8, 300, ("no bootstrap", "preset", "4 steps", "8 steps")
DECODE_CHUNK = 4                              # videos per tokenizer decode: full-resolution activations are large
METRICS = ("persistence", "lost", "reshaped", "extra", "consistency", "motion", "trajectory_error", "miss_rate")
METHODS = ("mebt", "sliding-window", "autoregressive")
TASK_NAMES = tuple(task.name for task in TASKS)


@torch.no_grad()
def pixels(tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """Token grids (B, t, h, w) -> videos (B, 3, T, H, W) on the CPU, DECODE_CHUNK videos at a time."""
    device = next(tokenizer.parameters()).device
    return torch.cat([tokenizer.decode(chunk.to(device)).cpu() for chunk in tokens.split(DECODE_CHUNK)])


def summarize(scores: list[dict], task: Task, frames: int, data_histograms: dict) -> dict:
    """Per-video scores -> per scored window and overall: mean and 95% CI over videos (rounded for JSON)."""
    windows = task.windows(frames)
    rounded = lambda interval: {k: None if v is None else round(v, 4) for k, v in interval._asdict().items()}
    out, per_video = {}, {}
    for metric in METRICS:
        if metric in scores[0]:
            values = np.stack([s[metric][windows] for s in scores])                    # (videos, windows)
            per_video[metric] = nanmean(values, axis=1)                                 # each video's mean first
            out[metric] = dict(windows=[rounded(i) for i in mean_ci(values)], mean=rounded(mean_ci(per_video[metric])))
    if "histograms" in scores[0]:
        empty = np.array([s["without_objects"] for s in scores])
        out["videos_without_objects"] = int(empty.sum())
        out["diversity_tv"] = {
            key: rounded(pooled_ci(np.stack([s["histograms"][key] for s in scores]),
                                   lambda pooled, key=key: total_variation(pooled, data_histograms[key])))
            for key in data_histograms}
    if "first_count" in scores[0] and "count" in data_histograms:   # (the ablations pass no data histograms)
        # persistence re-weighted to the data's mix of object counts: a model that draws one object where the data
        # has one or two keeps "frame 1's objects" more easily, and this mean does not reward it for that
        weights = np.asarray(data_histograms["count"], dtype=np.float64)                     # (counts,)
        counts = np.array([min(s["first_count"], len(weights) - 1) for s in scores])
        standardized, by_count = standardized_ci(per_video["persistence"], counts, weights)
        out["persistence_at_data_counts"] = dict(
            mean=rounded(standardized),
            by_count={str(c): dict(videos=int((counts == c).sum()), **rounded(by_count[c]))
                      for c in range(len(weights)) if (counts == c).any()})
    return out


def run_method(name: str, generate, metered: Metered, given: torch.Tensor, batch_size: int, tokenizer, seed: int):
    """Decode every video of `given` (n, t, h, w) in batches -> (videos (n, 3, T, H, W), calls and FLOPs per
    video, seconds). generate(model, given_batch, generator) -> token grids; one generator for the whole run."""
    metered.reset()
    generator = torch.Generator(given.device).manual_seed(seed)
    start, batches, grids = time.perf_counter(), 0, []
    for chunk in given.split(batch_size):
        grids.append(generate(metered, chunk, generator).cpu())
        batches += 1
    seconds = time.perf_counter() - start
    videos = pixels(tokenizer, torch.cat(grids))
    print(f"  {name}: {len(given)} videos, {metered.calls / batches:.0f} calls and "
          f"{metered.flops / batches / 1e9:.1f} GFLOP per video, {seconds:.0f} s")
    return videos, metered.calls / batches, metered.flops / batches, seconds


def methods(cfg, models: dict, unknown: int, quick: bool) -> list[dict]:
    """Every (method, budget) run of a task for the methods in `models`: names, decoding settings, the function
    that decodes, and whether it is the method's DEFAULT budget (the per-window plot and the side-by-side GIF)."""
    runs = []
    for budget, change in MEBT_BUDGETS:
        if "mebt" not in models or quick and budget not in QUICK_BUDGETS:
            continue
        settings = {**sampling_settings(cfg.train, unknown), **change}
        runs.append(dict(method="mebt", budget=budget, settings=settings, model=models["mebt"], uses_last_frames=True,
                         default=budget == DEFAULT["mebt"],
                         generate=lambda m, g, gen, s=settings: mebt_tokens(m, g, s, gen)))
    for budget, change in SLIDING_BUDGETS:   # bootstrap is capped again per window, at its unknown tokens
        if "sliding-window" not in models or quick and budget not in QUICK_BUDGETS:
            continue
        settings = {**sampling_settings(cfg.train, models["sliding-window"].cfg.n_positions), **change}
        runs.append(dict(method="sliding-window", budget=budget, settings=settings, model=models["sliding-window"],
                         uses_last_frames=True, default=budget == DEFAULT["sliding-window"],
                         generate=lambda m, g, gen, s=settings: sliding_window_tokens(m, g, s, gen)))
    if "autoregressive" in models:   # MeBT's own token sampling, one token per call
        mebt_draws = sampling_settings(cfg.train, unknown)
        settings = dict(temperature=1.0, **{k: mebt_draws[k] for k in ("foreground_temperature", "background_code")})
        runs.append(dict(method="autoregressive", budget="one call per token", settings=settings,
                         model=models["autoregressive"], uses_last_frames=False, default=True,
                         generate=lambda m, g, gen, s=settings: autoregressive_tokens(m, g, s, gen)))
    return runs


def comma_list(value: str) -> list[str]:
    """--methods / --tasks as given ("a,b" -> ["a", "b"]); check_args says what is allowed."""
    return value.split(",")


def check_args(args) -> None:
    for flag, value in (("--num-videos", args.num_videos), ("--batch-size", args.batch_size),
                        ("--baseline-steps", args.baseline_steps)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} {value}: expected at least 1")
    if args.foreground_temperature is not None and args.foreground_temperature <= 0:
        raise ValueError(f"--foreground-temperature {args.foreground_temperature}: expected > 0 (1 = off)")
    for flag, chosen, allowed in (("--methods", args.methods, METHODS), ("--tasks", args.tasks, TASK_NAMES)):
        if any(c not in allowed for c in chosen) or len(set(chosen)) < len(chosen):
            raise ValueError(f"{flag} {','.join(chosen)}: expected a comma-separated subset of {','.join(allowed)}")


def run_quality(args, device: torch.device) -> dict:
    check_args(args)
    num_videos = args.num_videos or (QUICK_VIDEOS if args.quick else 64)
    model, cfg, payload = load_mebt(args.ckpt, device)
    if args.foreground_temperature is not None:   # every method decodes with the checkpoint's settings: all get it
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(
            cfg.train, sample_foreground_temperature=args.foreground_temperature))
    if cfg.data.dataset != "synthetic":
        raise ValueError(f"--ckpt {args.ckpt} was trained on {cfg.data.dataset!r}: quality needs the synthetic "
                         "data's ground truth")
    if cfg.data.frames % WINDOW or cfg.data.frames < 3 * WINDOW or cfg.model.grid[0] != cfg.token_grid[0]:
        raise ValueError(f"--ckpt {args.ckpt}: its {cfg.data.frames}-frame clips must be at least 3 whole "
                         f"{WINDOW}-frame windows (interpolation generates between two), in one grid")
    tokenizer, _, tokenizer_fp = load_tokenizer_for(payload, args.ckpt, device)
    steps = args.baseline_steps or (min(payload["step"], QUICK_BASELINE_STEPS) if args.quick else payload["step"])
    # every call of every model counted; one Metered per model, so FLOPs counted once per call shape for all runs
    models, baselines = {"mebt": Metered(model)} if "mebt" in args.methods else {}, {}
    for name, load_baseline in (("sliding-window", sliding_window_model), ("autoregressive", autoregressive_model)):
        if name in args.methods:   # a baseline is trained (and kept) only when it is asked for
            baseline, path, baseline_steps = load_baseline(args.ckpt, cfg, tokenizer_fp, steps, device)
            models[name], baselines[name] = Metered(baseline), dict(checkpoint=path, steps=baseline_steps)

    # held-out clips: the eval split's generator (seed disjoint from training), as many videos as asked
    data = dataclasses.replace(cfg.data, num_eval_videos=max(num_videos, cfg.data.num_eval_videos))
    heldout = build_dataset(data, "eval")
    truths = [heldout.truth(i) for i in range(num_videos)]
    tracks = [true_tracks(truth) for truth in truths]   # where each true object is seen: once, for every method
    start = time.perf_counter()
    with torch.no_grad():   # every video through the tokenizer once: the primes, the ends and the ceiling
        clips = torch.stack([heldout[i] for i in range(len(heldout))])
        real_tokens = torch.cat([tokenizer.encode(c.to(device)).cpu() for c in clips.split(DECODE_CHUNK)])
    nll = heldout_cross_entropy(model, real_tokens[:cfg.data.num_eval_videos], cfg, "fp32", Dist(device=device))
    real = pixels(tokenizer, real_tokens[:num_videos])
    train = build_dataset(cfg.data, "train")   # the data's object histograms: the training set's exact truths
    data_histograms = {key: sum(object_histograms(Objects(t.colours, t.shapes))[key]
                                for t in map(train.truth, range(len(train))))
                       for key in ("count", "colour", "shape")}
    results = dict(checkpoint=os.path.abspath(args.ckpt), steps=payload["step"], num_videos=num_videos,
                   frames=cfg.data.frames, window=WINDOW, quick=args.quick, seed=args.seed,
                   heldout=dict(split="eval", first_video=0, count=num_videos, generator_seed=heldout.seed),
                   heldout_nll=round(nll, 4), eval_mask_ratio=cfg.train.eval_mask_ratio,
                   methods=list(models), baselines=baselines,
                   data_histograms={k: v.tolist() for k, v in data_histograms.items()},
                   tokenizer_seconds=round(time.perf_counter() - start, 1), tasks={})

    factor, (t, h, w) = cfg.tokenizer.temporal_downsample, cfg.model.grid
    side_by_side = {}
    for task in (task for task in TASKS if task.name in args.tasks):
        given = task.given(real_tokens[:num_videos], factor).to(device)
        unknown = int((given[0] < 0).sum())
        print(f"quality: {task.name} ({num_videos} videos, {unknown} of {t * h * w} tokens to generate)")
        rows = [dict(method="tokenizer (real clips)", budget="-", calls=0, flops=0, seconds=0, uses_last_frames=True,
                     default=True, **summarize([score_video(v, task, *t) for v, t in zip(real, zip(truths, tracks))],
                                               task, cfg.data.frames, data_histograms))]
        for run in methods(cfg, models, unknown, args.quick):
            videos, calls, flops, seconds = run_method(f"{run['method']} ({run['budget']})", run["generate"],
                                                       run["model"], given, args.batch_size, tokenizer, args.seed)
            scores = [score_video(v, task, *t) for v, t in zip(videos, zip(truths, tracks))]
            rows.append(dict(method=run["method"], budget=run["budget"], settings=run["settings"],
                             calls=round(calls, 1), flops=round(flops), seconds=round(seconds, 1),
                             uses_last_frames=run["uses_last_frames"] or not task.last, default=run["default"],
                             **summarize(scores, task, cfg.data.frames, data_histograms)))
            if task.name == "prediction" and run["default"]:
                side_by_side[run["method"]] = videos[:4]
        results["tasks"][task.name] = dict(given_first_frames=task.first, given_last_frames=task.last,
                                           windows=[WINDOW * i for i in task.windows(cfg.data.frames)], runs=rows)
    name = device_name(device)
    path = os.path.join(args.out_dir, f"quality-{name}.json")
    write_json(path, results)
    print_table(results)
    plot_quality(results, os.path.join(args.out_dir, f"quality-{name}.png"))
    if side_by_side:   # the prediction task's videos: real | each method, from the same 16 frames
        write_side_by_side(os.path.join(args.out_dir, f"side-by-side-{name}.gif"), real[:4], side_by_side)
    print(f"wrote {path} and its .png" + (f" and side-by-side-{name}.gif" if side_by_side else ""))
    return results


def add_parser(sub) -> None:
    p = sub.add_parser("quality", help="three long-video tasks vs sliding-window and autoregressive baselines")
    p.add_argument("--ckpt", required=True, help="a MeBT checkpoint trained on the synthetic data (out/mebt.pt)")
    p.add_argument("--num-videos", type=int, default=None,
                   help="held-out videos per method and task (default 64, --quick 8): CIs shrink as 1/sqrt(n)")
    p.add_argument("--batch-size", type=int, default=16,
                   help="videos decoded together; larger is faster per video until memory runs short")
    p.add_argument("--baseline-steps", type=int, default=None,
                   help="training steps of the two baselines (default: as many as --ckpt's; --quick at most "
                        f"{QUICK_BASELINE_STEPS}); each step count trains and keeps its own baseline")
    p.add_argument("--methods", default=",".join(METHODS), type=comma_list,
                   help=f"comma-separated subset of {','.join(METHODS)} (default: all). 'mebt' alone scores a "
                        "checkpoint in minutes without training baselines, e.g. to compare checkpoints of a sweep")
    p.add_argument("--tasks", default=",".join(TASK_NAMES), type=comma_list,
                   help=f"comma-separated subset of {','.join(TASK_NAMES)} (default: all); each task costs about "
                        "the same, so one task takes a third of the time")
    p.add_argument("--quick", action="store_true", help="a smoke run: few videos, short baselines; not a measurement")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (each method and budget starts from it)")
    p.add_argument("--foreground-temperature", type=float, default=None,
                   help="every method's draws keep p(background) and sharpen the other codes by this temperature "
                        "(mebt.decoding.sharpen_foreground). 0.5 raised persistence for MeBT and more for the "
                        "sliding window, by narrowing shapes and colours (README). Default: the checkpoint's (1, off)")
    p.set_defaults(run=run_quality)
