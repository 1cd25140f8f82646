"""`python bench.py data`: does reading real videos keep up? Frames/s from JPEG folders and MP4 files with 0, 1
and 2 DataLoader workers, the token-cache build's wall time, and the cache build's peak memory at 1,000 vs
10,000 tiny videos (it should not grow with the number of videos beyond the tokens themselves).

    python bench.py data --root /tmp/mebt-data          # makes its videos there on the first run (~10 min), reuses them

The data (generated, deterministic): a SkyTimelapse-like folder of 200 videos x 200 frames of 640x360 JPEGs
(sky_train/<id>/<id>_1/<id>_frames_<n>.jpg: a sky gradient under drifting smooth clouds, JPEG quality 90), the
same frames as 200 H.264 MP4 files, and 10,000 tiny GIFs (16 frames of 32x32). Reading: random 16-frame windows
at 128x128 (the paper's resolution), batches of 8 (the tokenizer stage), each setting timed twice for --seconds,
from the first batch on (worker start-up excluded). The cache build encodes every non-overlapping 128-frame
window with the tiny preset's tokenizer at 128 px (random weights: encoding cost does not depend on them).
Peak memory: a fresh process builds each tiny-video cache; its own and its worker processes' maximum RSS.
The machine may be busy: the load average is recorded next to every timing.
"""
from __future__ import annotations

import multiprocessing
import os
import resource
import time

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from benchmarks.common import device_name, parse_list, write_json
from mebt.clip_loader import clip_loader
from mebt.config import get_preset
from mebt.token_cache import build_or_load
from mebt.tokenizer import VQTokenizer
from mebt.video_folder import VideoFolder

WIDTH, HEIGHT = 640, 360           # SkyTimelapse's frame size
CLIP, RESOLUTION, BATCH = 16, 128, 8


def sky_frames(video: int, frames: int) -> np.ndarray:
    """(frames, 360, 640, 3) uint8: a sky gradient with smooth clouds drifting 2 px per frame (deterministic)."""
    rng = np.random.default_rng(video)
    rows = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None, None]             # (H, 1, 1)
    top, bottom = rng.uniform([20, 60, 140], [90, 140, 230]), rng.uniform([170, 190, 210], [240, 240, 250])
    sky = top + (bottom - top) * rows                                             # (H, 1, 3)
    coarse = Image.fromarray((rng.random((12, 48)) * 255).astype(np.uint8))      # low-resolution noise ...
    clouds = np.asarray(coarse.resize((WIDTH + 2 * frames, HEIGHT), Image.BICUBIC), np.float32) / 255   # ... smooth
    out = np.empty((frames, HEIGHT, WIDTH, 3), np.uint8)
    for t in range(frames):
        cover = np.clip(clouds[:, 2 * t:2 * t + WIDTH] * 1.6 - 0.5, 0, 1)[..., None]   # (H, W, 1) cloud density
        out[t] = (sky * (1 - cover) + 245 * cover).astype(np.uint8)
    return out


def make_data(root: str, videos: int, frames: int, tiny: int) -> None:
    """Write the JPEG folder, the MP4s and the tiny GIFs under root, skipping whatever is already complete."""
    for v in range(videos):
        folder = os.path.join(root, "sky", "sky_train", f"{v:04d}", f"{v:04d}_1")
        mp4 = os.path.join(root, "mp4", f"{v:04d}.mp4")
        if os.path.exists(os.path.join(folder, f"{v:04d}_frames_{frames:08d}.jpg")) and os.path.exists(mp4):
            continue
        pixels = sky_frames(v, frames)
        os.makedirs(folder, exist_ok=True)
        for t, frame in enumerate(pixels, 1):
            Image.fromarray(frame).save(os.path.join(folder, f"{v:04d}_frames_{t:08d}.jpg"), quality=90)
        os.makedirs(os.path.dirname(mp4), exist_ok=True)
        iio.imwrite(mp4 + ".tmp.mp4", pixels, fps=25, codec="libx264", macro_block_size=1)
        os.replace(mp4 + ".tmp.mp4", mp4)
        print(f"  made video {v + 1}/{videos}", end="\r", flush=True)
    folder = os.path.join(root, "tiny")
    os.makedirs(folder, exist_ok=True)
    for k in range(len(os.listdir(folder)), tiny):                                # 16 frames of 32x32, each different
        pixels = np.random.default_rng(k).integers(0, 256, (16, 4, 4, 3), dtype=np.uint8).repeat(8, 1).repeat(8, 2)
        iio.imwrite(os.path.join(folder, f"{k:05d}.gif"), pixels, duration=40, loop=0)


def load_average() -> float:
    return os.getloadavg()[0]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers, ffmpeg) so far."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def read_rate(root: str, workers: int, seconds: float, seed: int) -> dict:
    """Frames/s of random 16-frame windows at 128 px, batches of 8, timed from the first batch for `seconds`; and
    CPU seconds per frame, which a busy machine does not change (with workers it also counts the batches they
    had read ahead, so it is exact at 0 workers only)."""
    data = VideoFolder(root, CLIP, RESOLUTION)
    rng = np.random.default_rng(seed)

    def draw(step):
        videos = rng.integers(0, len(data), BATCH)
        return [(int(i), int(rng.integers(data.starts(i)))) for i in videos]
    batches = iter(clip_loader(data, CLIP, draw, range(10**6), workers))
    next(batches)                                                                 # workers started, first batch in
    start, cpu, frames = time.perf_counter(), cpu_seconds(), 0
    while time.perf_counter() - start < seconds:
        frames += next(batches).shape[0] * CLIP
    elapsed = time.perf_counter() - start
    del batches                                                                   # stops (and reaps) the workers
    return {"frames_per_s": frames / elapsed, "cpu_s_per_frame": (cpu_seconds() - cpu) / frames, "frames": frames,
            "seconds": elapsed, "load_average": load_average()}


def tiny_tokenizer() -> VQTokenizer:
    torch.manual_seed(0)
    return VQTokenizer(get_preset("tiny").tokenizer).eval()


def cache_build(root: str, frames: int, resolution: int, out: str, batch: int) -> dict:
    """Wall time of a token-cache build of every non-overlapping window of root's videos (default workers)."""
    start = time.perf_counter()
    data = VideoFolder(root, frames, resolution)
    indexed = time.perf_counter() - start
    tokens = build_or_load(out, tiny_tokenizer(), data, {"bench": out}, batch_size=batch, progress=False)
    return {"videos": len(data), "clips": len(tokens), "index_s": indexed, "wall_s": time.perf_counter() - start,
            "cache_bytes": os.path.getsize(out), "load_average": load_average()}


def _peak_rss_child(root: str, out: str, queue) -> None:
    torch.set_num_threads(1)
    result = cache_build(root, 16, 32, out, batch=8)
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024        # Linux: KiB
    result["workers_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    queue.put(result)


def peak_rss(root: str, count: int, scratch: str) -> dict:
    """Build the cache of the first `count` tiny videos in a fresh process; its peak memory."""
    folder = os.path.join(scratch, f"tiny{count}")
    if not os.path.isdir(folder):                                                 # links: no copies of the files
        os.makedirs(folder)
        for name in sorted(os.listdir(os.path.join(root, "tiny")))[:count]:
            os.link(os.path.join(root, "tiny", name), os.path.join(folder, name))
    out = os.path.join(scratch, f"tiny{count}.pt")
    if os.path.exists(out):
        os.remove(out)
    context = multiprocessing.get_context("spawn")                                # a clean process: its own peak
    queue = context.Queue()
    child = context.Process(target=_peak_rss_child, args=(folder, out, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


def mp4_index_seconds(root: str, count: int, scratch: str) -> float:
    """Seconds to index `count` MP4 files (links to the 200 made above, cycled): one header read per file."""
    folder = os.path.join(scratch, f"mp4x{count}")
    if not os.path.isdir(folder):
        os.makedirs(folder)
        sources = sorted(os.listdir(os.path.join(root, "mp4")))
        for k in range(count):
            os.link(os.path.join(root, "mp4", sources[k % len(sources)]), os.path.join(folder, f"{k:05d}.mp4"))
    start = time.perf_counter()
    VideoFolder(folder, CLIP, 32)
    return time.perf_counter() - start


def run(args, device: torch.device) -> dict:
    workers = parse_list("--workers", args.workers, kind=int)
    root = os.path.abspath(args.root)
    print(f"data under {root} (made once, then reused)")
    make_data(root, args.videos, args.frames_per_video, max(args.tiny_counts))
    results = {"cores": len(os.sched_getaffinity(0)), "read": [], "cache_build": [], "peak_rss": []}
    for kind, folder in (("jpeg", os.path.join(root, "sky")), ("mp4", os.path.join(root, "mp4"))):
        for w in workers:
            for repeat in range(args.repeats):
                rate = {"format": kind, "workers": w, "repeat": repeat, **read_rate(folder, w, args.seconds, repeat)}
                results["read"].append(rate)
                print(f"{kind:5s} workers={w} run {repeat + 1}: {rate['frames_per_s']:7.1f} frames/s, "
                      f"{1000 * rate['cpu_s_per_frame']:.1f} CPU ms per frame (load average {rate['load_average']:.1f})")
    scratch = os.path.join(root, "scratch")
    os.makedirs(scratch, exist_ok=True)
    for kind, folder in (("jpeg", os.path.join(root, "sky")), ("mp4", os.path.join(root, "mp4"))):
        build = {"format": kind, **cache_build(folder, 128, RESOLUTION, os.path.join(scratch, f"{kind}.pt"), batch=1)}
        results["cache_build"].append(build)
        print(f"cache build ({kind}, {build['clips']} clips of 128 frames at 128 px, tiny tokenizer): "
              f"{build['wall_s']:.0f} s (index {build['index_s']:.2f} s, load average {build['load_average']:.1f})")
    for count in args.tiny_counts:
        rss = {"videos": count, **peak_rss(root, count, scratch), "mp4_index_s": mp4_index_seconds(root, count, scratch)}
        results["peak_rss"].append(rss)
        print(f"{count} MP4 files indexed in {rss['mp4_index_s']:.1f} s")
        print(f"cache build of {count} tiny GIFs: index {rss['index_s']:.1f} s, total {rss['wall_s']:.0f} s, "
              f"peak RSS {rss['peak_rss_mib']:.0f} MiB (workers {rss['workers_peak_rss_mib']:.0f} MiB), "
              f"cache {rss['cache_bytes'] / 2**20:.1f} MiB")
    write_json(os.path.join(args.out_dir, f"data-{device_name(device)}.json"), results)
    return results


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="frames/s read with 0/1/2 DataLoader workers, cache build time and memory")
    p.add_argument("--root", default="/tmp/mebt-data", help="where the generated videos live (~3 GB; made once)")
    p.add_argument("--videos", type=int, default=200, help="SkyTimelapse-like videos (and as many MP4s)")
    p.add_argument("--frames-per-video", type=int, default=200, help="frames of each (640x360)")
    p.add_argument("--workers", default="0,1,2", help="comma-separated DataLoader worker counts to time")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per setting (a shared machine varies)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each timed run")
    p.add_argument("--tiny-counts", type=lambda text: parse_list("--tiny-counts", text, kind=int), default=[1000, 10000],
                   help="numbers of tiny videos whose cache build's peak memory is compared")
    p.set_defaults(run=run)
