"""Training clips read in DataLoader worker processes, drawn in the main process so that runs replay exactly.

The main process decides each step's clips, (video index, first frame) pairs drawn from a generator that depends
only on (seed, step, rank); worker processes only read them. So a run with 0, 1 or 8 workers sees the same
clips in the same order, and --resume replays them, while reading overlaps training.

    loader = clip_loader(dataset, clip_frames=16, draw=lambda step: [(3, 40), (7, 0)], steps=range(0, 100), workers=2)
    for clips in batches(loader): ...        # (B, 3, clip_frames, H, W), one batch per step

Try it: python -m pytest -q tests/test_video_folder.py -k loader
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mebt.video_folder import VideoFolder


class ClipReader(Dataset):
    """Worker side: item (video index, first frame) -> the clip (3, clip_frames, H, W)."""

    def __init__(self, dataset, clip_frames: int):
        self.dataset, self.clip_frames = dataset, clip_frames

    def starts(self, video_index: int) -> int:
        """How many first frames a clip of video `video_index` can have."""
        if isinstance(self.dataset, VideoFolder):
            return self.dataset.starts(video_index)               # built with frames=clip_frames: its windows
        return self.dataset.frames - self.clip_frames + 1           # generated data: every video has .frames

    def __getitem__(self, pair: tuple[int, int]) -> torch.Tensor:
        video_index, start = pair
        if isinstance(self.dataset, VideoFolder):
            return self.dataset.clip(video_index, start)             # decodes just this window
        return self.dataset.window(video_index, start, self.clip_frames)   # generated data: renders just these frames


class StepBatches(Sampler):
    """Yields draw(step) for each step in `steps`: the batch sampler of a DataLoader that runs once over training."""

    def __init__(self, draw: Callable[[int], list[tuple[int, int]]], steps: range):
        self.draw, self.steps = draw, steps

    def __iter__(self):
        return (self.draw(step) for step in self.steps)   # lazy: with 0 workers, step s is drawn during step s

    def __len__(self) -> int:
        return len(self.steps)


def clip_loader(dataset, clip_frames: int, draw: Callable[[int], list[tuple[int, int]]], steps: range,
                workers: int, pin_memory: bool = False) -> DataLoader:
    """One batch per step of `steps`, read by `workers` processes (0 = in this process)."""
    # generator: a DataLoader draws its workers' base seed when iteration starts, from the global RNG unless given
    # its own; that draw would shift the model's random numbers at the first step (so a resumed run would differ)
    return DataLoader(ClipReader(dataset, clip_frames), batch_sampler=StepBatches(draw, steps), num_workers=workers,
                      pin_memory=pin_memory, generator=torch.Generator())


def one_line(error: Exception) -> str:
    """A worker's exception reaches us with its whole traceback in the message: keep only the final
    "Type: message" line's message (errors raised in this process pass unchanged)."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    return text.strip().splitlines()[-1].split(": ", 1)[-1]


def batches(loader: DataLoader) -> Iterator:
    """Iterate a DataLoader, turning a worker's ValueError (an unreadable frame or video) into one line."""
    try:
        yield from loader
    except ValueError as error:
        raise ValueError(one_line(error)) from None
