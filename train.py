"""Train MeBT end to end: tokenizer -> token cache -> transformer -> samples, all under --out-dir.

    python train.py                                              # synthetic data, tiny preset (34 min on 2 idle CPU cores, README)
    python train.py --tokenizer-steps 30 --transformer-steps 30 --out-dir /tmp/smoke     # a smoke run (~1 min)
    python train.py --resume                                     # continue a run stopped with Ctrl-C
    python train.py --stage transformer --resume --transformer-steps 7000                # train the transformer longer
    python train.py --dataset skytimelapse --data-dir /data/sky_timelapse --preset small --out-dir out_sky
    python train.py --dataset videos --data-dir /data/UCF-101 --preset small --out-dir out_ucf   # docs/datasets.md
    torchrun --nproc_per_node=8 train.py --preset paper --data-dir /data/sky_timelapse --dtype bf16 --out-dir out_paper
    python sample.py --ckpt out/mebt.pt                          # then sample from the trained model

Writes OUT/tokenizer.pt, OUT/tokens_{train,eval}.pt (the token cache), OUT/mebt.pt, OUT/metrics.jsonl
(one JSON object per line) and OUT/samples/*.gif. Ctrl-C (or SIGTERM) saves a checkpoint at the current step
and exits; --resume continues exactly where it stopped (same data, curriculum position and learning rate).
--dtype auto (default) autocasts matmuls to bfloat16 where the GPU or CPU multiplies bf16 in hardware (weights,
optimiser and loss stay float32), else runs in float32; on a CPU the tokenizer (convolutions) stays in float32.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from mebt.config import PRESETS, Config, get_preset
from mebt.distributed import Dist, Stopped, setup, teardown
from mebt.pipeline import LossNotFinite, RunPaths, refuse_overwrite, resolve_dtype
from mebt.train_tokenizer import train_tokenizer
from mebt.train_transformer import train_transformer


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train the MeBT tokenizer and transformer (see the docstring of train.py). "
                                            "Flags left out take the preset's value.")
    p.add_argument("--dataset", choices=["synthetic", "videos", "skytimelapse"], default=None,
                   help="synthetic: built-in bouncing shapes, nothing to download (default for tiny/small). "
                        "videos: your own folder, needs --data-dir (docs/datasets.md: SkyTimelapse, UCF-101, Taichi). "
                        "skytimelapse: the same reader under its old name (default for paper)")
    p.add_argument("--data-dir", default=None,
                   help="a folder searched recursively for video files (.mp4 .mov .avi .webm .gif) and frame folders "
                        "(numbered .jpg/.png), or a train.txt list of frame paths; a train/, sky_train/ or train.txt "
                        "inside is the training split and test/, sky_test/ or test.txt the held-out one")
    p.add_argument("--stride", type=int, default=None,
                   help="take every N-th frame of real videos (the paper: 4 on Taichi, 1 elsewhere); a 128-frame clip "
                        "then spans 128 x N source frames. Default: the preset's (1)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes reading the tokenizer's training clips. Default: one per spare CPU core "
                        "(at most 8) for real videos, 0 for synthetic data (generated faster than processes start)")
    p.add_argument("--out-dir", default="out", help="every checkpoint, log and sample of the run goes here (default: out)")
    p.add_argument("--preset", choices=list(PRESETS), default="tiny",
                   help="tiny (default): 32x32x128 on a 2-core CPU in about 34 min; small: 64x64 on one GPU, hours; paper: the paper-scale 336M-parameter model")
    p.add_argument("--stage", choices=["tokenizer", "transformer", "all"], default="all",
                   help="all (default) = tokenizer, token cache, transformer, samples; transformer needs OUT/tokenizer.pt")
    p.add_argument("--frames", type=int, default=None,
                   help="clip length in video frames (a multiple of 4); shorter trains faster. Default: the preset's (128)")
    p.add_argument("--resolution", type=int, default=None,
                   help="frame size in pixels (a multiple of the tokenizer's spatial factor). Default: the preset's")
    p.add_argument("--tokenizer-steps", type=int, default=None,
                   help="tokenizer training steps (tiny: 1500, about 1 min on 2 CPU cores); PSNR keeps improving slowly after that")
    p.add_argument("--transformer-steps", type=int, default=None,
                   help="transformer training steps (tiny: 7000); the curriculum and LR schedule stretch to fit")
    p.add_argument("--batch-size", type=int, default=None,
                   help="transformer clips per step and process (the tokenizer keeps the preset's); lower it if you "
                        "run out of memory, and lower --lr with it; for the tiny preset 4 beat 8 (one run each, README)")
    p.add_argument("--lr", type=float, default=None,
                   help="transformer peak learning rate (tiny: 1e-3; ~3e-5 at 345M parameters); lower it if the loss "
                        "turns NaN")
    p.add_argument("--curriculum-full-at", type=float, default=None,
                   help="fraction of the transformer steps after which full-length clips are the most likely length "
                        "(tiny: 0.65). At the tiny preset's 7,000 steps 0.65 kept 59%% of frame 1's objects; 1.0 "
                        "(cheaper: shorter windows) 40%%, 0.3 26%% and 62%% (two seeds), --no-curriculum 42%% (one "
                        "run each unless noted, README): 0.65 was the best we measured")
    p.add_argument("--min-lr-ratio", type=float, default=None,
                   help="the cosine schedule ends at lr x this (tiny: 0.1; 1 = constant after warm-up). 1 scored "
                        "22%%, 32%% and 64%% persistence at steps 4,200, 5,600 and 7,000 against 58%%, 52%% and 59%% "
                        "for 0.1 (one run each, README): a high learning rate late leaves noisy checkpoints")
    p.add_argument("--frame-split-prob", type=float, default=None,
                   help="share of transformer batches whose context is whole frames at the window's start (and end), "
                        "as prediction and interpolation ask (default 0). 0.25 took prediction persistence from 28%% "
                        "to 57-60%% but unconditional from 60-66%% to 46-57%% (two runs each, README): use it for "
                        "prediction or interpolation, not for unconditional samples")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu, cuda or cuda:N (default: cuda if available); under torchrun each process takes cuda:LOCAL_RANK")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initial weights and every step's data draws; same seed + flags = same run (default: 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the checkpoints in --out-dir (a finished tokenizer is reused); without it an "
                        "existing checkpoint is an error, never overwritten")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto (default): bf16 where the device multiplies bfloat16 in hardware (CUDA from Ampere on; "
                        "CPUs with avx512_bf16 or amx_bf16), else fp32; on a CPU the tokenizer stays fp32 (bf16 "
                        "convolutions there gave random NaNs). bf16 = matmuls in bfloat16 via autocast, weights, "
                        "optimiser and loss in float32: on our CPU about 1.26x faster per transformer step at equal or "
                        "better held-out CE. Compare: `python bench.py throughput --dtype bf16 --threads 2`")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the models: worth it on a GPU for long runs; compiling costs a minute or more")
    p.add_argument("--no-curriculum", action="store_true",
                   help="train on full-length clips from the first step (the curriculum starts short and grows)")
    p.add_argument("--eval-every", type=int, default=None,
                   help="held-out PSNR / cross-entropy and a checkpoint every N steps, both stages (tiny: 200)")
    p.add_argument("--keep-every", type=int, default=0,
                   help="also keep the transformer's checkpoint every N steps as OUT/mebt_stepN.pt (default 0: only "
                        "OUT/mebt.pt, overwritten at each evaluation); for scoring quality along one run with "
                        "`bench.py quality --ckpt OUT/mebt_stepN.pt`. The tiny preset's checkpoint is 25 MB")
    p.add_argument("--sample-every", type=int, default=None,
                   help="write samples/step_N.gif every N transformer steps; 0 = only samples/final.gif at the end "
                        "(each sample costs a full decode)")
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> Config:
    """The preset, with every flag that was given written over it (the result is stored in the checkpoints)."""
    for flag in ("frames", "resolution", "stride", "tokenizer_steps", "transformer_steps", "batch_size", "lr",
                 "eval_every", "sample_every"):
        value = getattr(args, flag)
        if value is not None and (value < 0 or (value == 0 and flag != "sample_every")):
            raise ValueError(f"--{flag.replace('_', '-')}={value}: expected a positive number")
    cfg = get_preset(args.preset)
    d, t = cfg.data, cfg.train
    d.dataset = args.dataset or d.dataset
    d.frames = args.frames or d.frames
    d.resolution = args.resolution or d.resolution
    d.stride = args.stride or d.stride
    cfg.model.grid = cfg.token_grid   # the model's positional tables follow the clip's token grid
    t.tokenizer_clip_frames = min(t.tokenizer_clip_frames, d.frames)
    # validate() checks the ranges of the last two: curriculum_full_at in (0, 1], min_lr_ratio in [0, 1]
    for field in ("tokenizer_steps", "transformer_steps", "batch_size", "lr", "eval_every", "sample_every",
                  "curriculum_full_at", "min_lr_ratio"):
        if getattr(args, field) is not None:
            setattr(t, field, getattr(args, field))
    if args.frame_split_prob is not None:
        cfg.model.frame_split_prob = args.frame_split_prob   # validate() rejects values outside [0, 1]
    return cfg.validate()


def check_args(args: argparse.Namespace, cfg: Config) -> None:
    """Every mistake we can see before loading data or building models, as one line."""
    if cfg.data.dataset != "synthetic" and not args.data_dir:
        raise ValueError(f"--dataset {cfg.data.dataset} needs --data-dir PATH (a folder of videos or frame folders)")
    if cfg.data.dataset == "synthetic" and (args.data_dir or args.stride):
        raise ValueError("--data-dir and --stride are only read with --dataset videos; the synthetic data is generated")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers={args.workers}: expected 0 (read in the training process) or more")
    if args.no_curriculum and args.curriculum_full_at is not None:
        raise ValueError("--curriculum-full-at times the curriculum, which --no-curriculum turns off: give one of them")
    if args.keep_every < 0:
        raise ValueError(f"--keep-every={args.keep_every}: expected 0 (keep no snapshots) or a positive number of steps")
    if args.seed < 0:
        raise ValueError(f"--seed={args.seed}: expected a non-negative integer")
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    paths = RunPaths(args.out_dir)
    if args.stage in ("tokenizer", "all"):
        refuse_overwrite(paths.tokenizer, args.resume)
    if args.stage in ("transformer", "all"):
        refuse_overwrite(paths.mebt, args.resume)
    if args.stage == "transformer" and not os.path.exists(paths.tokenizer):
        raise FileNotFoundError(f"no tokenizer at {paths.tokenizer}: run --stage tokenizer first")


def run(args: argparse.Namespace, dist: Dist) -> None:
    cfg = build_config(args)
    check_args(args, cfg)
    dtype = resolve_dtype(args.dtype, dist.device)
    tokenizer_dtype = resolve_dtype(args.dtype, dist.device, convolutional=True)   # fp32 on CPUs: see there
    if dist.is_main and args.dtype == "auto":
        print(f"--dtype auto on {dist.device}: tokenizer {tokenizer_dtype}, transformer {dtype}")
    common = dict(data_dir=args.data_dir, seed=args.seed, resume=args.resume, compile=args.compile, dist=dist,
                  workers=args.workers)
    start = time.time()
    if args.stage in ("tokenizer", "all"):
        train_tokenizer(cfg, args.out_dir, dtype=tokenizer_dtype, **common)
    if args.stage in ("transformer", "all"):
        train_transformer(cfg, args.out_dir, curriculum=not args.no_curriculum, dtype=dtype,
                          keep_every=args.keep_every, **common)
    if dist.is_main:
        print(f"done in {time.time() - start:.0f}s: everything is in {args.out_dir}/")


def main(argv=None) -> int:
    args = parse_args(argv)
    dist = setup(args.device)
    try:
        run(args, dist)
    except Stopped as e:   # the checkpoint is saved: not an error, but the run did not finish
        print(e, file=sys.stderr)
        return 130
    except KeyboardInterrupt:   # outside a training loop (data scan, token cache, sampling): nothing to save
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError, ValueError, LossNotFinite) as e:
        print(f"error: {e}", file=sys.stderr)   # one line, no traceback: these are the user's to fix
        return 1
    finally:
        teardown(dist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
