"""FVD of generated videos against real ones, with I3D weights the user supplies (nothing is ever downloaded).

    python sample.py --ckpt out_sky/mebt.pt --num-samples 2048 --frames 16 --out samples.npy
    python bench.py fvd --i3d i3d_pretrained_400.pt --real /data/sky_timelapse/sky_test --fake samples.npy --device cuda
    # the paper's 128-frame FVD: 512 samples of 128 frames, whole videos
    python bench.py fvd --i3d i3d_pretrained_400.pt --real /data/taichi-png/test --fake long.npy --frames 128 --num-videos 512 --stride 4

The protocol is the MeBT authors' (mebt/fvd.py says which and why FVDs differ between papers). Prints the FVD
with a 95% bootstrap interval over videos and writes OUT/fvd-<device>.json: the number, every protocol setting,
and the inputs (paths, shapes, the I3D weights' fingerprint). Without --i3d it refuses in one line. On a CPU
I3D takes ~2 s per 16-frame clip (one thread): 2 x 2048 clips want a GPU.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
from tqdm import tqdm

from benchmarks.common import device_name, write_json
from mebt.checkpoint import fingerprint
from mebt.fvd import BATCH, CLIP_FRAMES, NUM_VIDEOS, features_distance, folder_clips, i3d_logits, sample_clips
from mebt.i3d import load_i3d
from mebt.video_folder import VideoFolder, loader_workers

I3D_SOURCE = ("pass --i3d PATH, the Kinetics-400 Inception-I3D weights i3d_pretrained_400.pt that the TATS, VideoGPT "
              "and MeBT authors' FVD code loads (DeepMind's TF-Hub I3D converted to PyTorch by the VideoGPT authors, "
              "shared with those repositories); we never download it")
INTERVAL_RESAMPLES = 200   # bootstrap redraws of both sets for the interval (each: two 400 x 400 eigendecompositions)


def load_videos(flag: str, path: str) -> np.ndarray:
    """A uint8 (N, T, H, W, 3) .npy, memory-mapped (2048 x 128 frames at 128 px is 12 GB: never read whole)."""
    try:
        videos = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise ValueError(f"{flag} {path}: not a readable .npy file ({error})") from None
    if videos.dtype != np.uint8 or videos.ndim != 5 or videos.shape[-1] != 3:
        raise ValueError(f"{flag} {path}: expected uint8 videos (N, T, H, W, 3) as sample.py --out writes, "
                         f"got {videos.dtype} {videos.shape}")
    return videos


def real_batches(args, resolution: int, rng: np.random.Generator):
    """(batches of real uint8 clips, a description) from --real: a .npy like --fake, or a folder of videos."""
    if args.real.endswith(".npy"):
        real = load_videos("--real", args.real)
        if real.shape[2] != resolution:
            raise ValueError(f"--real {args.real}: {real.shape[2]} px videos, --fake has {resolution} px: compare "
                             "videos of one resolution")
        return sample_clips(real, args.frames, 1, args.num_videos, rng, args.batch_size), list(real.shape)
    # a folder: read as training reads it (centre crop, antialiased resize) at the samples' resolution
    videos = VideoFolder(args.real, args.frames, resolution, args.stride)
    workers = loader_workers(videos) if args.workers is None else args.workers
    return folder_clips(videos, args.num_videos, rng, workers, args.batch_size), f"{len(videos)} videos"


def run_fvd(args, device) -> dict:
    try:
        return measure(args, device)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"bench.py fvd: error: {error}")                        # one line, exit status 1


def measure(args, device) -> dict:
    if not args.i3d:
        raise ValueError(I3D_SOURCE)
    for flag in ("real", "fake"):
        if not getattr(args, flag):
            raise ValueError(f"--{flag} is required: --real a folder of videos or a .npy, --fake sample.py's .npy")
    for flag in ("num_videos", "frames", "stride", "batch_size"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: expected at least 1")
    fake = load_videos("--fake", args.fake)
    if len(fake) < args.num_videos:
        raise ValueError(f"--fake {args.fake} has {len(fake)} videos, --num-videos {args.num_videos} asks for more: "
                         "sample more (sample.py --num-samples) or lower --num-videos (a smaller set gives a higher FVD)")
    if fake.shape[1] < args.frames:
        raise ValueError(f"--fake {args.fake} has {fake.shape[1]} frames, --frames {args.frames} needs as many")
    i3d = load_i3d(args.i3d, device)
    rng = np.random.default_rng(args.seed)                               # the windows and the real videos' order
    real_clips, real_desc = real_batches(args, fake.shape[2], rng)
    start = time.perf_counter()
    steps = -(-args.num_videos // args.batch_size)
    real = i3d_logits(i3d, tqdm(real_clips, total=steps, desc="I3D real", unit="batch"), device)   # (N, 400)
    generated = sample_clips(fake, args.frames, 1, args.num_videos, rng, args.batch_size)   # already strided
    fake_logits = i3d_logits(i3d, tqdm(generated, total=steps, desc="I3D fake", unit="batch"), device)
    fvd = features_distance(real, fake_logits)
    redraw = np.random.default_rng(0).integers(0, args.num_videos, size=(INTERVAL_RESAMPLES, 2, args.num_videos))
    spread = [features_distance(real[a], fake_logits[b]) for a, b in redraw]
    low, high = np.quantile(spread, [0.025, 0.975])
    print(f"FVD = {fvd:.2f} (95% bootstrap interval over videos {low:.2f} .. {high:.2f}), {args.num_videos} videos "
          f"of {args.frames} frames per side (real folder read at stride {args.stride}), "
          f"{time.perf_counter() - start:.0f} s")
    result = {"fvd": fvd, "interval_95": [float(low), float(high)], "seconds": time.perf_counter() - start,
              "protocol": {"features": "I3D Kinetics-400 logits", "num_videos": args.num_videos,
                           "frames": args.frames, "stride": args.stride, "size": 224, "seed": args.seed},
              "real": {"path": os.path.abspath(args.real), "videos": real_desc},
              "fake": {"path": os.path.abspath(args.fake), "shape": list(fake.shape)},
              "i3d": {"path": os.path.abspath(args.i3d), "fingerprint": fingerprint(i3d.state_dict())}}
    write_json(os.path.join(args.out_dir, f"fvd-{device_name(device)}.json"), result)
    return result


def add_parser(sub) -> None:
    p = sub.add_parser("fvd", help="FVD of sample.py's .npy against real videos, with your own I3D weights")
    p.add_argument("--i3d", default=None, help="i3d_pretrained_400.pt (the Kinetics-400 I3D of TATS / VideoGPT / "
                                               "the MeBT authors); required, never downloaded")
    p.add_argument("--real", default=None,
                   help="real videos: a folder read like train.py --dataset videos (point it at the split you compare "
                        "with, e.g. sky_test; the authors used UCF-101's training videos) or a uint8 .npy")
    p.add_argument("--fake", default=None, help="generated videos: sample.py --out samples.npy, uint8 (N, T, H, W, 3)")
    p.add_argument("--num-videos", type=int, default=NUM_VIDEOS,
                   help="videos per side (paper: 2048 for 16 frames, 512 for 128); fewer gives a higher, noisier FVD")
    p.add_argument("--frames", type=int, default=CLIP_FRAMES,
                   help="frames per clip fed to I3D (paper: 16, and 128 for long videos); a random window of each video")
    p.add_argument("--stride", type=int, default=1,
                   help="read every N-th frame of a --real folder: the stride the model was trained with (Taichi: 4). "
                        "Generated videos already have it, and .npy videos are taken as they are")
    p.add_argument("--batch-size", type=int, default=BATCH, help="clips per I3D call; lower it if memory runs out")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes reading a --real folder (default: one per spare core, at most 8)")
    p.add_argument("--seed", type=int, default=0, help="seeds the windows and the order of real videos")
    p.set_defaults(run=run_fvd)
