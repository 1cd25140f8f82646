"""Frechet Video Distance (FVD, Unterthiner et al. 2018) with the protocol of the code the MeBT and TATS authors ran.

    python bench.py fvd --i3d i3d_pretrained_400.pt --real /data/sky_timelapse/sky_test --fake samples.npy

The protocol (their measure_fvd_with_numpy.py + TATS's fvd.py), and ours by default:
- features: the Kinetics-400 *logits* (400 numbers) of Inception-I3D (mebt/i3d.py), not the 1024-d pool layer;
- clips of 16 frames (`frames`; their FVD_128 feeds whole 128-frame videos, `frames=128`); real videos read at the
  frame stride the model was trained with (Taichi: every 4th frame), generated ones as they are (they have it);
- 2048 videos per side (`num_videos`; they use 512 for 128-frame videos);
- each uint8 clip is resized to 224 x 224 (bilinear, no antialiasing, corners not aligned) and scaled to [-1, 1];
- real clips: one random window per video, videos in random order, reused (new windows) if fewer than
  `num_videos`; generated clips: one random window of each sample longer than the clip (they draw one start per
  batch of 32: the same distribution of windows);
- the Frechet distance between the two Gaussians fitted to the features (unbiased covariances):
  |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), here in float64 (eigendecompositions, one SVD; numpy).

Why papers' FVDs differ, and ours may differ from theirs: the protocol (logits vs pool features, 16 vs 128
frames, 512 vs 2048 videos, train vs test real videos, which resize), the frame stride (Taichi at stride 4 moves
4x faster than at stride 1, and I3D sees motion), and compression: real videos stored as MP4 carry codec
artefacts that samples written as PNG or .npy do not, and I3D notices. Compare only numbers computed with the
same protocol, I3D weights and real data, ideally in the same run.

Try it: python -m pytest -q tests/test_fvd.py   (on a randomly initialised I3D: no FVD is computed there)
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from mebt.clip_loader import batches, clip_loader
from mebt.video_folder import VideoFolder
from mebt.video_io import to_uint8

CLIP_FRAMES = 16       # frames per clip fed to I3D
NUM_VIDEOS = 2048      # videos per side
SIZE = 224             # I3D's input resolution
BATCH = 16             # clips per I3D call (their MAX_BATCH)


def preprocess(clips: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """uint8 clips (B, T, H, W, 3) -> (B, 3, T, size, size) float32 in [-1, 1], resized as the reference does."""
    B, T, H, W, _ = clips.shape
    frames = clips.reshape(B * T, H, W, 3).permute(0, 3, 1, 2).float()              # (B*T, 3, H, W) in [0, 255]
    frames = F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False)   # no antialias: theirs
    return (frames.reshape(B, T, 3, size, size).transpose(1, 2) * (2 / 255) - 1).contiguous()


@torch.no_grad()
def i3d_logits(i3d: torch.nn.Module, batched: Iterable, device="cpu", size: int = SIZE) -> np.ndarray:
    """I3D logits of every clip: batches of uint8 clips (B, T, H, W, 3) -> (N, 400) float64."""
    features = []
    for clips in batched:
        clips = torch.as_tensor(np.asarray(clips)).to(device)                      # (B, T, H, W, 3) uint8
        features.append(i3d(preprocess(clips, size)).double().cpu().numpy())        # (B, 400)
    return np.concatenate(features)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"gaussian: expected features (N >= 2, D), got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T   # rounding can make a 0 slightly negative


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2) (TF-GAN and TATS take it so) = the sum of the singular values of
    S1^1/2 S2^1/2, since (S1^1/2 S2^1/2)(S1^1/2 S2^1/2)^T = S1^1/2 S2 S1^1/2. Summing singular values rather than
    square roots of that product's eigenvalues keeps small ones exact: an eigenvalue 1e-6 squares to 1e-12, lost in
    the rounding of a matrix whose largest is 1e3 (and its root, 1e-6, with it). No scipy, no complex parts."""
    mu1, mu2, sigma1, sigma2 = (np.asarray(a, dtype=np.float64) for a in (mu1, mu2, sigma1, sigma2))
    cross = np.linalg.svd(_sqrt_psd(sigma1) @ _sqrt_psd(sigma2), compute_uv=False).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * cross)


def features_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """The Frechet distance between the Gaussians of two feature sets (N, D) (FVD when they are I3D logits)."""
    return frechet_distance(*gaussian(real), *gaussian(fake))


def window_starts(lengths, span: int, rng: np.random.Generator) -> np.ndarray:
    """One uniformly random first frame per video for a window of `span` frames: (N,) ints."""
    lengths = np.asarray(lengths)
    if (lengths < span).any():
        raise ValueError(f"a window needs {span} frames, a video has {lengths.min()}")
    return rng.integers(0, lengths - span + 1)


def sample_clips(samples: np.ndarray, frames: int, stride: int, count: int, rng: np.random.Generator,
                 batch: int = BATCH):
    """Batches (B, frames, H, W, 3) uint8 of the first `count` videos of samples (N, T, H, W, 3) (a memmap is
    fine: one batch is read at a time), a random window of `frames` frames every `stride`-th from each."""
    if samples.ndim != 5 or samples.shape[-1] != 3 or samples.dtype != np.uint8:
        raise ValueError(f"expected uint8 videos (N, T, H, W, 3), got {samples.dtype} {samples.shape}")
    if len(samples) < count:
        raise ValueError(f"{len(samples)} videos, {count} needed")
    starts = window_starts([samples.shape[1]] * count, frames * stride, rng)   # a window spans frames x stride
    for first in range(0, count, batch):
        yield np.stack([samples[i, s:s + frames * stride:stride]
                        for i, s in zip(range(first, min(first + batch, count)), starts[first:first + batch])])


def folder_clips(videos: VideoFolder, count: int, rng: np.random.Generator, workers: int = 0, batch: int = BATCH):
    """Batches (B, frames, R, R, 3) uint8 of `count` clips of a VideoFolder (R = its resolution): videos in random
    order, one random window each, reused with new windows while fewer than `count`; read by `workers` processes."""
    order = np.concatenate([rng.permutation(len(videos)) for _ in range(-(-count // len(videos)))])[:count]
    pairs = [(int(i), int(rng.integers(videos.starts(i)))) for i in order]          # (video, first frame)
    loader = clip_loader(videos, videos.frames, lambda k: pairs[k * batch:(k + 1) * batch],
                         range(-(-count // batch)), workers)
    for clips in batches(loader):                                                  # (B, 3, T, R, R) in [-1, 1]
        yield to_uint8(clips)                                                      # as a stored video: uint8
