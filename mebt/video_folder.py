"""Real videos: a folder (searched recursively) of video files and/or frame folders, read a window at a time.

    data = VideoFolder("/data/UCF-101", frames=16, resolution=128, stride=1)   # .avi files, any depth
    data = VideoFolder("/data/sky_timelapse", frames=128, resolution=128)      # frame folders (SkyTimelapse)
    data[i]                         # a random window of video i: (3, frames, 128, 128) float32 in [-1, 1]
    data.clip(i, start)             # the window starting at frame `start` (every `stride`-th frame)

A video is either a file (.mp4 .mov .avi .webm .gif, see mebt/video_files.py) or a run of numbered images
(.jpg .jpeg .png) in one folder: frames are ordered by number (`_9` before `_10`) and a gap in the numbering starts
a new video. A root may also be a train.txt / test.txt list of frame paths (the MeBT authors' layout). Splits:
train reads root/train.txt, root/sky_train or root/train (the first that exists), else the whole root; eval reads
test.txt, sky_test or test, else falls back to the training videos (with a warning). docs/datasets.md shows the
layouts of SkyTimelapse, UCF-101 and Taichi as distributed.

Decisions: videos shorter than one window are skipped and counted in one line. A video *file* we cannot read
(corrupt, empty, not a video) is skipped while indexing, with one warning line naming it: files are independent,
and one bad download among 13,320 UCF-101 clips should not stop a run. An unreadable *image* inside a frame folder
is an error naming it, when a window containing it is read: skipping it would silently join the frames on
either side into a jump. Indexing opens no image and decodes no video (a header read per file), so 10,000 files
index in seconds; items hold only paths and counts, so the dataset works in DataLoader worker processes.

Try it: python -m pytest -q tests/test_video_folder.py
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from mebt.cpu_load import usable_cpus
from mebt.video_files import VIDEO_SUFFIXES, UnreadableVideo, count_frames, read_frames

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
LAYOUTS = ("a folder of video files (.mp4 .mov .avi .webm .gif) and/or frame folders at any depth, e.g. "
           "sky_train/<id>/<id>_<k>/<id>_frames_<n>.jpg or UCF-101/<class>/<clip>.avi (pass the folder holding "
           "them), or a train.txt/test.txt list of frame paths")
SPLIT_SOURCES = {"train": ("train.txt", "sky_train", "train"), "eval": ("test.txt", "sky_test", "test")}


@dataclass(frozen=True)
class VideoFile:
    """One video file and its frame count (from the container header)."""
    path: Path
    frames: int

    def __len__(self) -> int:
        return self.frames


def frame_number(path: Path) -> int:
    """The frame's number: the last run of digits in its file name ("x_frames_00000046.jpg" -> 46)."""
    digits = re.findall(r"\d+", path.stem)
    if not digits:
        raise ValueError(f"{path}: a frame file name must contain its frame number")
    return int(digits[-1])


def split_at_gaps(numbered: list[tuple[int, Path]]) -> list[list[Path]]:
    """Sort frames by number (numeric: 9 before 10) and cut wherever the numbering skips: each run is a video."""
    runs, previous = [], None
    for number, path in sorted(numbered):
        if previous is None or number != previous + 1:
            runs.append([])
        runs[-1].append(path)
        previous = number
    return runs


def scan_folders(root: Path) -> tuple[list, list[str]]:
    """Every video file and every run of numbered images under root, in a fixed order; and the warnings for
    video files that could not be read (skipped)."""
    videos, warnings = [], []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()                                           # a deterministic order on every OS
        files.sort()
        frames = [Path(folder) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        videos += split_at_gaps([(frame_number(f), f) for f in frames])
        for name in files:
            if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                try:
                    videos.append(VideoFile(Path(folder) / name, count_frames(Path(folder) / name)))
                except UnreadableVideo as error:
                    warnings.append(str(error))
    return videos, warnings


def scan_list(list_file: Path) -> list[list[Path]]:
    """A list of frame paths relative to the list's folder; video id = path minus its last `_`-field."""
    by_video: dict[str, list[tuple[int, Path]]] = {}
    for line_number, line in enumerate(list_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        relative = line.split()[0]                                  # the path is the first column
        video_id, _, number = os.path.splitext(relative)[0].rpartition("_")
        if not video_id or not number.isdigit():
            raise ValueError(f"{list_file}:{line_number}: expected <video>_<frame number>.<ext>, got {relative!r}")
        by_video.setdefault(video_id, []).append((int(number), list_file.parent / relative))
    return [run for numbered in by_video.values() for run in split_at_gaps(numbered)]


def find_source(root: Path, split: str) -> Path:
    """The list file or folder that holds `split`'s videos. Without a held-out split, eval reuses train's (warned)."""
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such file or folder; expected {LAYOUTS}")
    if root.is_dir():
        for name in SPLIT_SOURCES[split]:
            if (root / name).exists():
                return root / name
    if split == "eval":
        print(f"[data] no held-out split (test.txt, sky_test/ or test/) under {root}: evaluating on the training videos")
        return find_source(root, "train") if root.is_dir() else root
    return root


def square(image: Image.Image, resolution: int) -> torch.Tensor:
    """Centre-crop to a square, antialiased (Lanczos) resize: (3, resolution, resolution) float32 in [-1, 1]."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    image = image.convert("RGB").crop((left, top, left + side, top + side)).resize((resolution, resolution),
                                                                                 Image.LANCZOS)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32))   # (H, W, 3) in [0, 255]
    return pixels.permute(2, 0, 1) / 127.5 - 1


def load_frame(path: Path, resolution: int) -> torch.Tensor:
    """One image file -> (3, resolution, resolution) in [-1, 1]."""
    try:
        with Image.open(path) as image:
            scale = resolution / min(image.size)
            # JPEG only: decode at 1/2, 1/4 or 1/8 size (in the DCT, several times faster) while the short side
            # stays >= resolution; the Lanczos resize below then does the rest of the antialiased shrink
            image.draft("RGB", (math.ceil(image.size[0] * scale), math.ceil(image.size[1] * scale)))
            image.load()                                             # a full decode: corrupt files fail here
            return square(image, resolution)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read frame {path}: {error}") from None


class VideoFolder(Dataset):
    """The videos under `root` (see the module docstring) for one split, as windows of `frames` frames taken every
    `stride`-th source frame, centre-cropped and resized to `resolution`.

    dataset[i] is a random window of video i (torch RNG: seeded per DataLoader worker).
    clip_starts() / clip(video_index, start) enumerate non-overlapping windows deterministically (token cache);
    starts(i) is the number of valid window starts of video i (random training crops drawn elsewhere)."""

    def __init__(self, root, frames: int, resolution: int, stride: int = 1, split: str = "train"):
        if split not in SPLIT_SOURCES:
            raise ValueError(f"split={split!r}: expected one of {', '.join(SPLIT_SOURCES)}")
        if frames < 1 or stride < 1:
            raise ValueError(f"frames={frames} and stride={stride} must both be >= 1")
        self.frames, self.resolution, self.stride = frames, resolution, stride
        self.span = frames * stride                                 # source frames one window covers (as the authors)
        self.source = find_source(Path(root), split)
        found, unreadable = (scan_list(self.source), []) if self.source.is_file() else scan_folders(self.source)
        for warning in unreadable:
            print(f"[data] skipped unreadable video {warning}")
        if not found:
            raise FileNotFoundError(f"{self.source}: no {'/'.join(IMAGE_SUFFIXES)} frames found, nor readable video "
                                    f"files; expected {LAYOUTS}")
        self.videos = [video for video in found if len(video) >= self.span]   # frame paths or a VideoFile
        if len(self.videos) < len(found):
            print(f"[data] {self.source}: skipped {len(found) - len(self.videos)} of {len(found)} videos "
                  f"shorter than {self.span} frames (frames={frames} x stride={stride})")
        if not self.videos:
            raise ValueError(f"{self.source}: no video has the {self.span} frames one window needs; expected {LAYOUTS}")

    def __len__(self) -> int:
        return len(self.videos)

    def starts(self, video_index: int) -> int:
        return len(self.videos[video_index]) - self.span + 1

    def clip(self, video_index: int, start: int) -> torch.Tensor:
        """The window of `frames` frames, every `stride`-th, from frame `start` of a video: (3, T, H, W)."""
        video = self.videos[video_index]
        if not 0 <= start < self.starts(video_index):
            raise ValueError(f"start={start}: video {video_index} has {len(video)} frames, a window needs {self.span}")
        if isinstance(video, VideoFile):
            pixels = read_frames(video.path, start, self.frames, self.stride)           # (T, H, W, 3) uint8
            frames = [square(Image.fromarray(frame), self.resolution) for frame in pixels]
        else:
            frames = [load_frame(path, self.resolution) for path in video[start:start + self.span:self.stride]]
        return torch.stack(frames, dim=1)                           # (3, T, H, W)

    def clip_starts(self) -> list[tuple[int, int]]:
        """(video_index, start) of every non-overlapping window, in a fixed order."""
        return [(i, start) for i, video in enumerate(self.videos)
                for start in range(0, len(video) - self.span + 1, self.span)]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.clip(i, int(torch.randint(0, self.starts(i), ())))


def loader_workers(dataset) -> int:
    """DataLoader worker processes for reading `dataset`: one per CPU core this process may use beyond the one
    that trains (at most 8), for datasets that read files; 0 for data generated in memory (cheaper than
    starting processes and pickling its clips back)."""
    if not isinstance(dataset, VideoFolder):
        return 0
    return max(1, min(8, len(usable_cpus()) - 1))
