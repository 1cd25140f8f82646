"""Video files: tensors in [-1, 1] <-> GIF / MP4 grids, PNG filmstrips, and frame folders.

Writing: save_video lays a batch out as a grid (one cell per sample, 2 px white borders),
upscales tiny frames with nearest-neighbour so a 32x32 sample is watchable, and writes a
looping GIF or an MP4 (the latter needs `pip install imageio-ffmpeg`). save_filmstrip
writes one PNG with a row per sample and a column per `every`-th frame. Every write goes
to a temporary file that is renamed into place, so a viewer never sees half a file.

Reading: read_video turns the first frames of a video file (.mp4 .mov .avi .webm .gif, decoded
as a stream by mebt/video_files.py) or of a folder of image frames (sorted by the numbers in
their names: frame_9 before frame_10) into a (3, T, H, W) tensor.

Note: GIF encoders merge identical consecutive frames (adding up their display times), so a
GIF of a video that stands still for a few frames reads back with fewer frames.

Try it:
    python -c "import torch; from mebt.video_io import save_video; save_video('/tmp/x.gif', torch.rand(4, 3, 16, 32, 32) * 2 - 1)"
"""
from __future__ import annotations

import math
import os
import re

import imageio.v3 as iio
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image

from mebt.checkpoint import atomic_write
from mebt.video_files import count_frames, read_frames

BORDER = 2                # px between (and around) grid cells
BORDER_VALUE = 255        # white: visible against the dark and the coloured content alike
MIN_DISPLAY = 128         # the default upscaling makes each frame at least this many px tall
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8; a batch (B, 3, T, H, W) -> (B, T, H, W, 3)."""
    if video.dim() not in (4, 5) or video.shape[-4] != 3:
        raise ValueError(f"to_uint8: expected a video (3, T, H, W) or a batch (B, 3, T, H, W), got shape {tuple(video.shape)}")
    pixels = ((video.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)   # -1 -> 0, 1 -> 255
    return rearrange(pixels, "... c t h w -> ... t h w c").numpy()


def _as_batch(videos: torch.Tensor, name: str) -> torch.Tensor:
    """Accept one video (3, T, H, W) or a batch; return a batch (B, 3, T, H, W)."""
    videos = videos.unsqueeze(0) if videos.dim() == 4 else videos
    if videos.dim() != 5 or videos.shape[1] != 3:
        raise ValueError(f"{name}: expected videos (B, 3, T, H, W) or (3, T, H, W), got shape {tuple(videos.shape)}")
    return videos


def _default_scale(height: int) -> int:
    return max(1, math.ceil(MIN_DISPLAY / height))


def make_grid(videos: torch.Tensor, nrow: int | None = None, scale: int = 1) -> np.ndarray:
    """(B, 3, T, H, W) in [-1, 1] -> (T, H', W', 3) uint8 frames: `nrow` videos per row (default ~square),
    each upscaled `scale` times (nearest neighbour), BORDER px apart."""
    if scale < 1 or (nrow is not None and nrow < 1):
        raise ValueError(f"make_grid: scale={scale} and nrow={nrow} must be >= 1")
    frames = to_uint8(_as_batch(videos, "make_grid"))                  # (B, T, H, W, 3)
    frames = frames.repeat(scale, axis=2).repeat(scale, axis=3)        # each pixel becomes a scale x scale block
    B, T, H, W, _ = frames.shape
    nrow = nrow or math.ceil(math.sqrt(B))
    rows = math.ceil(B / nrow)
    grid = np.full((T, rows * (H + BORDER) + BORDER, nrow * (W + BORDER) + BORDER, 3), BORDER_VALUE, np.uint8)
    for i in range(B):
        r, c = divmod(i, nrow)
        y, x = BORDER + r * (H + BORDER), BORDER + c * (W + BORDER)
        grid[:, y:y + H, x:x + W] = frames[i]
    return grid


def _require_ffmpeg(path: str) -> None:
    try:
        import imageio_ffmpeg  # noqa: F401  (imageio's MP4 reader/writer; ships its own ffmpeg binary)
    except ImportError:
        raise ModuleNotFoundError(f"{path}: .mp4 needs the imageio-ffmpeg package: pip install imageio-ffmpeg (or use .gif)") from None


def save_video(path, videos: torch.Tensor, fps: int = 8, nrow: int | None = None, scale: int | None = None) -> None:
    """Write a batch (B, 3, T, H, W) in [-1, 1] as one looping .gif or an .mp4 grid.
    `scale` (default: enough for MIN_DISPLAY px frames) upscales by an integer factor."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"{path}: unsupported video format {suffix!r}; use .gif or .mp4")
    if suffix == ".mp4":
        _require_ffmpeg(path)                                          # fail before doing any work
    videos = _as_batch(videos, "save_video")
    grid = make_grid(videos, nrow, scale or _default_scale(videos.shape[-2]))   # (T, H', W', 3)
    with atomic_write(path) as tmp:                                    # tmp keeps the suffix: imageio picks the format
        if suffix == ".gif":
            iio.imwrite(tmp, grid, duration=1000 / fps, loop=0)        # duration in ms per frame; loop=0: forever
        else:
            pad = ((0, 0), (0, grid.shape[1] % 2), (0, grid.shape[2] % 2), (0, 0))   # H.264 (yuv420p) needs even sizes
            grid = np.pad(grid, pad, constant_values=BORDER_VALUE)
            iio.imwrite(tmp, grid, fps=fps, macro_block_size=1)        # 1: pad ourselves rather than let ffmpeg rescale


def save_filmstrip(path, videos: torch.Tensor, every: int = 8, scale: int | None = None) -> None:
    """Write a .png with one row per sample and one column per `every`-th frame (frames 0, every, 2*every, ...)."""
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != ".png":
        raise ValueError(f"{path}: a filmstrip is written as .png")
    if every < 1:
        raise ValueError(f"save_filmstrip: every={every} must be >= 1")
    videos = _as_batch(videos, "save_filmstrip")[:, :, ::every]        # (B, 3, T', H, W)
    columns = videos.shape[2]
    cells = rearrange(videos, "b c t h w -> (b t) c 1 h w")            # every kept frame becomes a one-frame "video"
    strip = make_grid(cells, nrow=columns, scale=scale or _default_scale(videos.shape[-2]))[0]   # (H', W', 3)
    with atomic_write(path) as tmp:
        iio.imwrite(tmp, strip)


def _natural_key(name: str) -> list:
    """Sort key treating digit runs as numbers: frame_9 < frame_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _read_folder(path: str, frames: int | None) -> tuple[list[np.ndarray], int]:
    names = sorted((n for n in os.listdir(path) if os.path.splitext(n)[1].lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not names:
        raise ValueError(f"{path} has no image frames ({', '.join(IMAGE_SUFFIXES)})")
    pixels = []
    for name in names[:frames]:                                        # only decode what is needed
        with Image.open(os.path.join(path, name)) as image:
            pixels.append(np.asarray(image.convert("RGB")))            # grey / palette / RGBA -> RGB
        if pixels[-1].shape != pixels[0].shape:
            raise ValueError(f"{path}/{name} is {pixels[-1].shape[1]}x{pixels[-1].shape[0]}, "
                             f"expected {pixels[0].shape[1]}x{pixels[0].shape[0]} like {names[0]}")
    return pixels, len(names)


def _centre_square(video: torch.Tensor, resolution: int) -> torch.Tensor:
    """(3, T, H, W) -> (3, T, resolution, resolution): centre-crop to a square, antialiased resize."""
    H, W = video.shape[-2:]
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    video = video[:, :, top:top + side, left:left + side]
    if side != resolution:
        # interpolate treats dim 0 as the batch: put time there. antialias avoids aliasing when shrinking.
        video = F.interpolate(video.transpose(0, 1), size=(resolution, resolution), mode="bilinear",
                              antialias=True, align_corners=False).transpose(0, 1)
    return video.clamp(-1, 1).contiguous()


def read_video(path, frames: int | None = None, resolution: int | None = None) -> torch.Tensor:
    """Read the first `frames` frames (default all) of a video file (.mp4 .mov .avi .webm .gif, streamed: only
    those frames are decoded) or a folder of images as (3, T, H, W) float32 in [-1, 1]; with `resolution`,
    centre-crop to a square and resize to resolution x resolution. A file we cannot read is a ValueError
    (UnreadableVideo) whose one line names it and the formats we read."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no video at {path}")
    if frames is not None and frames < 1:
        raise ValueError(f"read_video: frames={frames} must be >= 1")
    if os.path.isdir(path):
        pixels, count = _read_folder(path, frames)
    else:
        pixels, count = None, count_frames(path)                        # from the header: nothing decoded yet
    if count == 0 or (frames is not None and count < frames):
        raise ValueError(f"{path} has {count} frames, expected at least {frames or 1}")
    if pixels is None:
        pixels = read_frames(path, 0, frames or count)                  # (T, H, W, 3) uint8: only these decoded
    video = torch.from_numpy(np.stack(pixels)).permute(3, 0, 1, 2).float() / 127.5 - 1   # (3, T, H, W)
    return video if resolution is None else _centre_square(video, resolution)
