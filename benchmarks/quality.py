"""`python bench.py quality`: long-video consistency on the synthetic data, exact, against the generator's truth.

Object persistence and motion plausibility per 16-frame window of 128 frames (mebt/consistency.py), for
(i) held-out clips through the tokenizer (the ceiling), (ii) MeBT samples, all frames in one shot, (iii) a
sliding-window baseline: the same model class trained on 16-frame clips, extended 2 latent frames (8 frames) at
a time given the previous 8 frames' tokens; plus MeBT's held-out masked-token cross-entropy at the fixed eval
mask ratio. Real clips are judged against their true objects, samples against the objects in their own first
frame (none = a failure). No FVD: it needs pretrained I3D weights, and these numbers are no stand-in for it.

    python bench.py quality --ckpt out/mebt.pt          # after `python train.py`; trains the baseline if needed
Writes bench/results/quality-<device>.{json,png} (--out-dir elsewhere).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
import warnings

import numpy as np
import torch

from benchmarks.common import write_json
from mebt.consistency import WINDOW, motion_plausibility, object_persistence, reference_objects
from mebt.data import build_dataset
from mebt.decoding import decode
from mebt.distributed import Dist
from mebt.pipeline import generate_videos, load_mebt, load_tokenizer_for, sampling_settings
from mebt.train_transformer import heldout_cross_entropy, train_transformer

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
    path = os.path.join(args.out_dir, f"quality-{device.type}.json")
    write_json(path, results)
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


def add_parser(sub) -> None:
    p = sub.add_parser("quality", help="object persistence / motion per window on synthetic data")
    p.add_argument("--ckpt", required=True, help="a MeBT checkpoint trained on the synthetic data (out/mebt.pt)")
    p.add_argument("--baseline-ckpt", default=None, help="the 16-frame sliding-window model; default: train it")
    p.add_argument("--baseline-steps", type=int, default=None, help="its training steps; default: as --ckpt's")
    p.add_argument("--num-videos", type=int, default=8, help="videos per method")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.set_defaults(run=run_quality)
