"""Training-time masking: split each sample's token positions into a context set and a target set.

Why: docs/objective-and-decoding.md. One mask ratio r is drawn per batch; per sample a random permutation of its N positions
puts the first N - ceil(r*N) in the context (visible) and the rest in the targets (to predict), with at least
two positions on each side: training never shows the model an empty context.
Every sample has the same (Nc, Nm), so a batch is two plain (B, n) index tensors: no padding.

Try it:
    python -c "import torch; from mebt.masking import sample_split; \
print(sample_split(torch.arange(8).expand(2, 8), 'uniform', ratio=0.5))"
"""
from __future__ import annotations

import math

import torch

SCHEDULES = ("uniform", "cosine")
MIN_SIDE = 2   # fewest positions on either side of a split, context or targets (see num_masked)


def mask_ratio(schedule: str, generator: torch.Generator | None = None) -> float:
    """Draws the fraction of tokens to mask for one batch.

    Args:
      schedule: "uniform" -> r = 1 - u (the MeBT authors); "cosine" -> r = cos(pi/2 * u) (MaskGIT),
        with u ~ U[0, 1). The cosine schedule favours high ratios (mean 2/pi ~ 0.64 vs 0.5).
      generator: optional torch.Generator (any device) for reproducible draws.

    Returns:
      r: float in (0, 1].
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"mask schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    device = generator.device if generator is not None else "cpu"   # a generator only draws on its own device
    u = torch.rand((), generator=generator, device=device).item()   # in [0, 1): both ratios below are in (0, 1]
    return 1.0 - u if schedule == "uniform" else math.cos(math.pi / 2 * u)


def num_masked(ratio: float, n: int) -> int:
    """ceil(ratio * n) clamped to [MIN_SIDE, n - MIN_SIDE]: at least two targets and two context tokens.

    Never an empty context: the encoder's cross layers would have nothing to read, and under DDP their
    gradients would arrive from some ranks only (find_unused_parameters on every step to survive it).
    Never a side of one either: torch.compile specialises sizes 0 and 1, so with both sides >= 2 a single
    graph with symbolic sizes serves every training step."""
    if n < 2 * MIN_SIDE:
        raise ValueError(f"num_masked: a split needs at least {2 * MIN_SIDE} positions, got {n}")
    # r*n in floating point can land a hair above an integer (0.3 * 10 = 3.0000000000000004);
    # the small offset keeps that from rounding up to the next count.
    return min(max(math.ceil(ratio * n - 1e-9), MIN_SIDE), n - MIN_SIDE)


def sample_split(positions: torch.Tensor, schedule: str, generator: torch.Generator | None = None,
                 ratio: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Splits every sample's positions into context and targets with one shared mask ratio.

    Args:
      positions: (B, N) long, the absolute flat positions each sample trains on (e.g. a curriculum window).
      schedule: "uniform" or "cosine", how the ratio is drawn (see mask_ratio).
      generator: optional torch.Generator on the same device as positions, for reproducible splits.
      ratio: a fixed ratio in [0, 1] instead of a random one (held-out evaluation).

    Returns:
      context_pos: (B, N - Nm) long, the first positions of each sample's random permutation.
      target_pos: (B, Nm) long, the rest; Nm = ceil(r * N) clamped to [2, N - 2] (see num_masked).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"mask schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if positions.dim() != 2 or positions.shape[0] == 0 or positions.shape[1] < 2 * MIN_SIDE:
        raise ValueError(f"positions must be a non-empty (B, N >= {2 * MIN_SIDE}) tensor, got shape "
                         f"{tuple(positions.shape)}")
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio={ratio}: expected a mask ratio in [0, 1]")
    B, N = positions.shape
    r = mask_ratio(schedule, generator) if ratio is None else ratio
    n_masked = num_masked(r, N)
    # argsort of i.i.d. uniforms is a uniformly random permutation, independently per row
    perm = torch.rand(B, N, generator=generator, device=positions.device).argsort(dim=1)  # (B, N)
    shuffled = positions.gather(1, perm)                                                 # (B, N)
    return shuffled[:, :N - n_masked], shuffled[:, N - n_masked:]   # (B, Nc), (B, Nm)


def sample_frame_split(num_frames: int, frame_size: int, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """A split of a window's slots by whole frames: the context is its first a and last b frames.

    Random splits never show the model what prediction (known start) and interpolation (known start and end)
    ask of it: many whole frames known, many whole frames unknown. Half the draws are prediction-shaped (b = 0),
    half interpolation-shaped (a, b >= 1 where the window allows); a + b is uniform in [1, num_frames - 1].

    Args:
      num_frames: T >= 2 latent frames in the window. frame_size: h*w slots per frame (raster order, frame-major).

    Returns:
      context_slot: ((a + b) * frame_size,) long; target_slot: ((T - a - b) * frame_size,) long.
    """
    if num_frames < 2 or frame_size < MIN_SIDE:
        raise ValueError(f"a frame split needs >= 2 frames of >= {MIN_SIDE} slots, got {num_frames} x {frame_size}")
    known = int(torch.randint(1, num_frames, (), generator=generator))                     # a + b
    interpolate = known >= 2 and bool(torch.rand((), generator=generator) < 0.5)
    first = int(torch.randint(1, known, (), generator=generator)) if interpolate else known  # a
    frame = torch.arange(num_frames * frame_size) // frame_size                            # (T*h*w,) each slot's frame
    is_context = (frame < first) | (frame >= num_frames - (known - first))
    return is_context.nonzero().squeeze(1), (~is_context).nonzero().squeeze(1)
