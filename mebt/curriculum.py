"""Length curriculum: train on short windows of the clip first, growing to the full clip (docs/curriculum.md).

At training step s a window length T in {1..T_max} latent frames is drawn with

    p(T) ∝ exp( -(s - (T-1)·b)² / (2·(b·c)²) )

so the most likely length is s/b + 1 (one more latent frame every b steps), spread about ±c frames.
A random window of T latent frames is cut from each clip; its tokens keep their *absolute* positions.

Try it:
    python -c "from mebt.curriculum import Curriculum; c = Curriculum.from_total_steps(32, 1000); \
print([c.sample_length(s) for s in range(0, 1000, 100)])"
"""
from __future__ import annotations

import torch


class Curriculum:
    """The interval schedule p(T | step) and the windows it cuts.

    Args:
      t_max: the longest window, in latent frames (the full clip: 32 for 128 frames at 4x downsampling).
      steps_per_frame: b, training steps per extra latent frame (authors: 30k on sky, 100k elsewhere).
      spread: c, the width of p(T) around its mode, in latent frames.
      enabled: False -> always the full t_max (short-clip configs train without a curriculum).
    """

    def __init__(self, t_max: int, steps_per_frame: float, spread: float = 2.0, enabled: bool = True):
        if t_max < 1:
            raise ValueError(f"curriculum t_max={t_max}: expected at least 1 latent frame")
        if steps_per_frame <= 0:
            raise ValueError(f"curriculum steps_per_frame={steps_per_frame}: expected > 0")
        if spread <= 0:
            raise ValueError(f"curriculum spread={spread}: expected > 0")
        self.t_max, self.steps_per_frame, self.spread, self.enabled = t_max, steps_per_frame, spread, enabled

    @classmethod
    def from_total_steps(cls, t_max: int, total_steps: int, full_at: float = 0.65, spread: float = 2.0,
                         enabled: bool = True) -> "Curriculum":
        """A curriculum whose mode reaches t_max after full_at * total_steps steps."""
        if total_steps < 1:
            raise ValueError(f"curriculum total_steps={total_steps}: expected at least 1")
        if not 0.0 < full_at <= 1.0:
            raise ValueError(f"curriculum full_at={full_at}: expected a fraction of training in (0, 1]")
        # t_max - 1 extra frames to grow by; with t_max == 1 there is nothing to grow and b is arbitrary
        b = full_at * total_steps / max(t_max - 1, 1)
        return cls(t_max, max(b, 1.0), spread, enabled)

    def probs(self, step: int) -> torch.Tensor:
        """p(T) for T = 1..t_max at this step: float32 (t_max,), sums to 1 (one-hot on t_max if disabled)."""
        if not self.enabled:
            return torch.nn.functional.one_hot(torch.tensor(self.t_max - 1), self.t_max).float()
        b, c = self.steps_per_frame, self.spread
        lengths = torch.arange(1, self.t_max + 1, dtype=torch.float64)           # (t_max,) T = 1..t_max
        exponent = -((step - (lengths - 1) * b) ** 2) / (2 * (b * c) ** 2)       # (t_max,) log p(T) + const
        # late in training every exponent is hugely negative; shifting by the max keeps exp() from underflowing to 0/0
        p = torch.exp(exponent - exponent.max())
        return (p / p.sum()).float()

    def sample_length(self, step: int, generator: torch.Generator | None = None) -> int:
        """Draws a window length T in 1..t_max (always t_max when disabled)."""
        if not self.enabled:
            return self.t_max
        return int(torch.multinomial(self.probs(step), 1, generator=generator).item()) + 1

    def sample_window(self, step: int, batch_size: int, grid: tuple[int, int, int],
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Absolute flat positions of a random window of T latent frames per sample.

        Args:
          step: the training step (sets the distribution of T).
          batch_size: B.
          grid: (t, h, w) of the full clip; t >= t_max.
          generator: optional CPU torch.Generator.

        Returns:
          positions: (B, T*h*w) long on the CPU. One T for the whole batch (same shapes), a random start
            frame per sample; the tokens of frames start..start+T-1 in raster order, pos = (ti*h + hi)*w + wi.
        """
        t, h, w = grid
        if t < self.t_max:
            raise ValueError(f"grid={tuple(grid)} has {t} latent frames but the curriculum's t_max is {self.t_max}")
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected at least 1")
        length = self.sample_length(step, generator)
        start = torch.randint(0, t - length + 1, (batch_size,), generator=generator)   # (B,) first latent frame
        frames = start[:, None] + torch.arange(length)                                  # (B, T) absolute frame index
        # a frame's h*w tokens are contiguous in the flat order: frame ti covers [ti*h*w, (ti+1)*h*w)
        positions = frames[:, :, None] * (h * w) + torch.arange(h * w)                  # (B, T, h*w)
        return positions.reshape(batch_size, length * h * w)                           # (B, T*h*w)
