"""`python bench.py ablations`: what each of MeBT's design choices buys, one change at a time, at equal steps.

Every variant trains from the same seed on the same token cache (one tokenizer for all: --tokenizer PATH, or one
trained here), for the same number of steps and batch size, and changes one thing against the tiny preset (the
list, and what each costs: benchmarks/ablation_variants.py): L = 8 or 128 latents instead of 32, no curriculum,
no write layers, a context updated by the latents instead of frozen, a cosine instead of a uniform mask ratio, and
the base again with another seed (the noise floor).

Per variant: held-out masked-token cross-entropy at mask ratios 0.1 / 0.5 / 0.9 on the first 16 frames and on all
128 frames of the held-out clips (mean and 95% bootstrap CI over clips, and the paired difference to the base),
training FLOPs (exact: one count on the meta device per variant, see step_flops) and seconds per step, and
the quality benchmark's headline numbers for unconditional samples (object persistence, consistency with the
video's own objects, motion plausibility, videos without objects: benchmarks/quality.py) on a few 128-frame samples
decoded with the preset's settings, with 95% bootstrap CIs over videos. One training run per variant: the CIs
are over held-out clips and videos, not over training seeds; the "base seed 1" row shows the seed-to-seed spread.

    python bench.py ablations --quick --tokenizer out/tokenizer.pt   # ~1 minute per variant, after python train.py
    python bench.py ablations                                         # a few minutes per variant
Writes bench/results/ablations-<device>.{json,png} (--out-dir elsewhere); scratch files go to --work-dir.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time

import numpy as np
import torch
from tqdm import tqdm

from benchmarks.ablation_variants import VARIANTS, build_model, step_flops, variant_config
from benchmarks.common import device_name, parse_list, write_json
from benchmarks.quality import summarize
from benchmarks.tasks import TASKS, score_video
from mebt.config import Config, get_preset
from mebt.curriculum import Curriculum
from mebt.distributed import Dist, shared_generator, step_generator
from mebt.model import MeBT
from mebt.pipeline import (RunPaths, check_tokenizer_matches, generate_videos, load_tokenizer, sampling_settings)
from mebt.stats import mean_ci
from mebt.token_cache import background_code
from mebt.train_tokenizer import train_tokenizer
from mebt.train_transformer import heldout_cross_entropy, lr_at, token_caches, train_step, training_batch

RATIOS = (0.1, 0.5, 0.9)          # held-out mask ratios: nearly everything visible / half / nearly nothing
EVAL_FRAMES = (16, 128)           # held-out lengths: the first 16 frames, and whole clips
FULL = dict(steps=600, videos=16, tokenizer_steps=1500)    # a few minutes per variant on one core
QUICK = dict(steps=100, videos=4, tokenizer_steps=300)     # about a minute per variant
CURVE_POINTS = 5                  # held-out evaluations during each run (the learning curve)
WORK_DIR = os.path.join("runs", "ablations")


def train_variant(name: str, cfg: Config, seed: int, caches: dict, device: torch.device) -> tuple[MeBT, dict]:
    """Train one variant for cfg.train.transformer_steps steps (the steps of mebt/train_transformer.py, without its
    checkpoints and samples); returns the model in eval mode and what the run cost, with a learning curve: the
    held-out CE (whole clips, train.py's fixed ratio) after every CURVE_POINTS-th of the run, against the training
    FLOPs spent so far, so that variants can also be compared at equal compute."""
    tc = cfg.train
    torch.manual_seed(seed)
    model = build_model(name, cfg).to(device)
    optimizer = torch.optim.AdamW(model.optim_groups(tc.weight_decay), lr=tc.lr, betas=tuple(tc.betas))
    schedule = Curriculum.from_total_steps(cfg.model.grid[0], tc.transformer_steps, full_at=tc.curriculum_full_at,
                                           spread=tc.curriculum_spread, enabled=tc.curriculum)
    flops = step_flops(name, cfg)
    checkpoints = {round(tc.transformer_steps * k / CURVE_POINTS) for k in range(1, CURVE_POINTS + 1)}
    total_flops, seconds, losses, curve = 0.0, 0.0, [], []
    for step in tqdm(range(tc.transformer_steps), desc=name, dynamic_ncols=True, leave=False):
        model.train()
        tick = time.perf_counter()
        batch = training_batch(caches["train"], step, schedule, cfg, step_generator(seed, step),
                               shared_generator(seed, step))
        loss, _ = train_step(model, optimizer, batch, lr_at(step, tc), tc.grad_clip, device, "fp32")
        losses.append(loss.item())   # .item() waits for the step: the clock below includes all of it
        seconds += time.perf_counter() - tick
        _, context_pos, target_pos, _ = batch
        total_flops += flops(*context_pos.shape, target_pos.shape[1])
        if step + 1 in checkpoints:
            ce = heldout_cross_entropy(model, caches["eval"], cfg, "fp32", Dist(device=device))
            curve.append(dict(step=step + 1, train_flops=total_flops, train_seconds=seconds, heldout_ce=ce))
    n = math.prod(cfg.model.grid)
    cost = dict(parameters=model.num_params(), steps=tc.transformer_steps, batch_size=tc.batch_size,
                train_seconds=seconds, seconds_per_step=seconds / tc.transformer_steps, train_flops=total_flops,
                full_length_step_flops=flops(tc.batch_size, n - n // 2, n // 2),
                final_train_loss=float(np.mean(losses[-20:])), curve=curve)
    return model.eval(), cost


def summary(values) -> dict:
    """Mean of one number per held-out clip (or sampled video) with its 95% bootstrap interval (mebt/stats.py)."""
    interval = mean_ci(values)
    return dict(mean=interval.mean, ci95=[interval.low, interval.high], n=len(values))


def heldout_ce_per_clip(model: MeBT, cfg: Config, tokens: torch.Tensor, frames: int, ratio: float,
                        device: torch.device) -> list[float]:
    """Masked-token cross-entropy (nats) of every held-out clip, on its first `frames` frames at mask `ratio`
    (the same fixed-seed masks as train.py's held-out number)."""
    t = frames // cfg.tokenizer.temporal_downsample
    _, h, w = cfg.model.grid
    # heldout_cross_entropy evaluates whole grids of cfg.model.grid: a (t, h, w) grid is the first t latent frames
    view = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, grid=(t, h, w)),
                               train=dataclasses.replace(cfg.train, eval_mask_ratio=ratio))
    return [heldout_cross_entropy(model, tokens[i:i + 1, :t], view, "fp32", Dist(device=device))
            for i in range(len(tokens))]


QUALITY = ("persistence", "consistency", "motion")   # the unconditional task's headline metrics


@torch.no_grad()
def sample_quality(model: MeBT, tokenizer, cfg: Config, num_videos: int, device: torch.device) -> dict:
    """`bench.py quality`'s unconditional scores of `num_videos` samples (whole clips, the preset's decoding): each
    metric's mean over videos with its 95% bootstrap CI, and how many samples hold no object at all."""
    generator = torch.Generator(device).manual_seed(0)
    videos = generate_videos(model, tokenizer, num_videos, generator=generator,
                             **sampling_settings(cfg.train, math.prod(cfg.model.grid))).cpu()   # (B, 3, T, H, W)
    unconditional = TASKS[0]
    scores = summarize([score_video(v, unconditional) for v in videos], unconditional, cfg.data.frames, {})
    quality = {k: dict(mean=scores[k]["mean"]["mean"], ci95=[scores[k]["mean"]["low"], scores[k]["mean"]["high"]],
                       n=num_videos) for k in QUALITY}
    return dict(quality, videos_without_objects=scores["videos_without_objects"])


def prepare_tokens(args, cfg: Config, device: torch.device):
    """The one tokenizer every variant shares (--tokenizer, or trained in --work-dir) and its token caches."""
    paths = RunPaths(args.work_dir)
    os.makedirs(args.work_dir, exist_ok=True)
    if args.tokenizer:
        if not os.path.isfile(args.tokenizer):
            raise FileNotFoundError(f"--tokenizer {args.tokenizer}: no such file (a tokenizer.pt from train.py)")
        if os.path.abspath(args.tokenizer) != os.path.abspath(paths.tokenizer):
            shutil.copy(args.tokenizer, paths.tokenizer + ".tmp")
            os.replace(paths.tokenizer + ".tmp", paths.tokenizer)   # never a half-copied tokenizer
        tokenizer, tokenizer_cfg, fp = load_tokenizer(paths.tokenizer, device)
        check_tokenizer_matches(tokenizer_cfg.tokenizer, cfg, args.tokenizer)
    else:
        train_tokenizer(cfg, args.work_dir, resume=True, dist=Dist(device=device))
        tokenizer, _, fp = load_tokenizer(paths.tokenizer, device)
    caches = token_caches(cfg, tokenizer, fp, paths, None, Dist(device=device))
    return tokenizer, caches, fp


def run_ablations(args, device: torch.device) -> dict:
    budget = QUICK if args.quick else FULL
    steps = args.steps or budget["steps"]
    videos = budget["videos"] if args.videos is None else args.videos
    if steps < 1 or videos < 0:
        raise ValueError(f"--steps {steps} must be >= 1 and --videos {videos} >= 0")
    variants = parse_list("--variants", args.variants, VARIANTS) if args.variants else list(VARIANTS)
    preset = get_preset("tiny")
    base = dataclasses.replace(preset, train=dataclasses.replace(
        preset.train, transformer_steps=steps, tokenizer_steps=budget["tokenizer_steps"]))
    tokenizer, caches, fp = prepare_tokens(args, base, device)
    # decode as train.py's checkpoints do: with the flat background's code, found in the token cache
    base = dataclasses.replace(base, train=dataclasses.replace(
        base.train, sample_background_code=background_code(caches["train"], base.model.vocab_size)))
    settings = dict(steps=steps, batch_size=base.train.batch_size, device=device_name(device),
                    tokenizer_fingerprint=fp, heldout_clips=len(caches["eval"]), eval_frames=list(EVAL_FRAMES),
                    ratios=list(RATIOS), sample_videos=videos,
                    decoding=sampling_settings(base.train, math.prod(base.model.grid)))
    path = os.path.join(args.out_dir, f"ablations-{device.type}.json")
    results = dict(settings, threads=torch.get_num_threads(), date=time.strftime("%Y-%m-%d"), variants={})
    if args.resume and os.path.exists(path):   # keep the variants an interrupted run of the same settings finished
        with open(path) as f:
            previous = json.load(f)
        changed = [k for k in settings if previous.get(k) != json.loads(json.dumps(settings[k]))]
        if changed:
            raise ValueError(f"--resume: {path} was run with other settings ({', '.join(changed)}); "
                             "use another --out-dir, or the same flags and tokenizer")
        results["variants"] = {k: v for k, v in previous["variants"].items() if k in variants}
    for name in variants:
        if name in results["variants"]:
            print(f"ablations: {name}: kept from {path}")
            continue
        cfg, seed = variant_config(name, base)
        print(f"ablations: {name}: training {steps} steps", flush=True)
        model, cost = train_variant(name, cfg, seed, caches, device)
        ce = {f"{frames}f": {str(r): heldout_ce_per_clip(model, cfg, caches["eval"], frames, r, device)
                             for r in RATIOS} for frames in EVAL_FRAMES}
        row = dict(seed=seed, **cost, heldout_ce={k: {r: summary(v) for r, v in by.items()} for k, by in ce.items()},
                   per_clip_ce=ce)
        if videos:
            start = time.perf_counter()
            row["quality"] = sample_quality(model, tokenizer, cfg, videos, device)
            row["sampling_seconds"] = time.perf_counter() - start
        results["variants"][name] = row
        print_row(name, row, flush=True)
        add_paired_differences(results)
        write_json(path, results)   # after every variant: an interrupted run loses only the one it was training
    print("\n" + markdown_tables(results))
    plot_ablations(results, os.path.join(args.out_dir, f"ablations-{device.type}.png"))
    print(f"wrote {path} and its .png")
    return results


def add_paired_differences(results: dict) -> None:
    """variant - base on the same held-out clips (same masks): mean difference and its 95% bootstrap CI."""
    base = results["variants"].get("base")
    if base is None:
        return
    for row in results["variants"].values():
        row["ce_minus_base"] = {k: {r: summary(np.subtract(v, base["per_clip_ce"][k][r])) for r, v in by.items()}
                                for k, by in row["per_clip_ce"].items()}


def fmt_ci(s: dict, digits: int = 3) -> str:
    if s["mean"] is None:   # e.g. motion, when no sample had a move to judge
        return "n/a"
    return f"{s['mean']:.{digits}f} [{s['ci95'][0]:.{digits}f}, {s['ci95'][1]:.{digits}f}]"


def print_row(name: str, row: dict, flush: bool = False) -> None:
    ce = row["heldout_ce"]
    parts = [f"{k} r={r}: {ce[k][r]['mean']:.3f}" for k in ce for r in ce[k]]
    persistence = f", persistence {fmt_ci(row['quality']['persistence'], 2)}" if "quality" in row else ""
    print(f"  {name}: {row['seconds_per_step']:.3f} s/step, {row['train_flops'] / 1e12:.2f} TFLOP; "
          + ", ".join(parts) + persistence, flush=flush)


def markdown_tables(results: dict) -> str:
    """The two tables of docs/ablations.md: held-out cross-entropy, then cost and sample quality."""
    short, long = (f"{f}f" for f in results["eval_frames"])
    cells = [f"CE {frames[:-1]} frames, r = {r}" for frames in (long, short) for r in RATIOS]
    lines = [f"Held-out masked-token cross-entropy (nats/token), mean [95% CI over {results['heldout_clips']} "
             f"held-out clips]; the last column: the paired difference to the base, on the same clips and masks.", "",
             "| variant | " + " | ".join(cells) + f" | {long[:-1]} frames, r = 0.5, minus base |",
             "|---" * (len(cells) + 2) + "|"]
    for name, row in results["variants"].items():
        ce, diff = row["heldout_ce"], row.get("ce_minus_base")
        values = [fmt_ci(ce[frames][str(r)]) for frames in (long, short) for r in RATIOS]
        lines.append(f"| {name} | " + " | ".join(values) + f" | {fmt_ci(diff[long]['0.5']) if diff else '–'} |")
    lines += ["", f"Cost of the {results['steps']} training steps (batch {results['batch_size']}, "
              f"{results['threads']} thread(s)), and `bench.py quality`'s unconditional scores of "
              f"{results['sample_videos']} samples per variant, mean [95% CI over videos].", "",
              "| variant | parameters | training TFLOPs | s / step | " + " | ".join(QUALITY) + " | samples without objects |",
              "|---" * (len(QUALITY) + 5) + "|"]
    for name, row in results["variants"].items():
        quality = row.get("quality")
        scores = [fmt_ci(quality[k], 2) if quality else "–" for k in QUALITY]
        empty = f"{quality['videos_without_objects']} of {quality['persistence']['n']}" if quality else "–"
        lines.append(f"| {name} | {row['parameters'] / 1e6:.2f}M | {row['train_flops'] / 1e12:.1f} | "
                     f"{row['seconds_per_step']:.2f} | " + " | ".join(scores) + f" | {empty} |")
    return "\n".join(lines)


def error_bars(stats: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Means and (2, n) distances to the CI's ends, as errorbar() wants them."""
    means = np.array([s["mean"] for s in stats])
    return means, np.array([[s["mean"] - s["ci95"][0], s["ci95"][1] - s["mean"]] for s in stats]).T


def plot_ablations(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")   # files only, no display
    import matplotlib.pyplot as plt

    short, long = (f"{f}f" for f in results["eval_frames"])
    names, rows = list(results["variants"]), list(results["variants"].values())
    fig, axes = plt.subplots(1, 4, figsize=(22, 5))
    for name, row in zip(names, rows):   # learning curves against compute: equal-FLOP comparisons
        curve = row["curve"]
        axes[3].plot([c["train_flops"] / 1e12 for c in curve], [c["heldout_ce"] for c in curve], marker="o", label=name)
    axes[3].set(xlabel="training TFLOPs spent", ylabel=f"held-out CE, {long[:-1]} frames, r = 0.5 (nats)")
    axes[3].legend(fontsize=8)
    for name, row in zip(names, rows):   # CE against mask ratio, whole clips
        axes[0].errorbar(RATIOS, *error_bars([row["heldout_ce"][long][str(r)] for r in RATIOS]), marker="o",
                         capsize=3, label=name)
    axes[0].set(xlabel=f"mask ratio (held-out, {long[:-1]} frames)", ylabel="masked-token cross-entropy (nats)")
    axes[0].legend(fontsize=8)
    if all("ce_minus_base" in row for row in rows):
        for frames, offset in ((long, -0.15), (short, 0.15)):
            axes[1].errorbar(np.arange(len(rows)) + offset, *error_bars([r["ce_minus_base"][frames]["0.5"] for r in rows]),
                             fmt="o", capsize=3, label=f"{frames[:-1]} frames")
        axes[1].axhline(0, color="grey", lw=1)
        axes[1].legend(fontsize=8)
    axes[1].set_ylabel("CE minus base at r = 0.5 (paired, nats): below 0 = better")
    for metric, offset in zip(QUALITY, (-0.2, 0.0, 0.2)):
        with_samples = [(i + offset, r["quality"][metric]) for i, r in enumerate(rows)
                        if "quality" in r and r["quality"][metric]["mean"] is not None]
        if with_samples:
            xs, stats = zip(*with_samples)
            axes[2].errorbar(xs, *error_bars(list(stats)), fmt="o", capsize=3, label=metric)
    axes[2].set_ylabel(f"unconditional samples ({results['sample_videos']} per variant)")
    axes[2].legend(fontsize=8)
    for ax in axes[1:3]:
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right")
    for ax in axes:
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"ablations: {results['steps']} steps x batch {results['batch_size']} each, tiny preset, "
                 f"synthetic data (95% bootstrap CIs over held-out clips / sampled videos; one training seed each)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("ablations", help="short training runs varying one design choice each, at equal steps")
    p.add_argument("--quick", action="store_true", help=f"{QUICK['steps']} steps and {QUICK['videos']} sampled "
                   f"videos per variant (~1 minute each) instead of {FULL['steps']} and {FULL['videos']}")
    p.add_argument("--tokenizer", default=None, help="a trained tokenizer.pt to share (e.g. out/tokenizer.pt); "
                   "default: train one in --work-dir (reused on the next run)")
    p.add_argument("--steps", type=int, default=None, help="training steps per variant (overrides --quick's)")
    p.add_argument("--videos", type=int, default=None, help="128-frame samples per variant for the quality scores "
                   "(0 = skip sampling); decoding costs ~1 s per video per variant on one core")
    p.add_argument("--variants", default=None, help=f"comma-separated subset of: {', '.join(VARIANTS)}")
    p.add_argument("--work-dir", default=WORK_DIR, help="scratch: the shared tokenizer and token caches")
    p.add_argument("--resume", action="store_true", help="keep the variants an interrupted run with the same "
                   "settings already wrote to the JSON (it is rewritten after every variant) and train the rest")
    p.set_defaults(run=run_ablations)
