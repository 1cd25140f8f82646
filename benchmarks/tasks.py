"""The three tasks of `bench.py quality`, how each method performs them, and what is measured on each video.

    task            given (real tokens)                generated           scored windows of 16 frames
    unconditional   nothing                            all 128 frames      1-8
    prediction      the first 16 frames                the 112 after       2-8
    interpolation   the first 16 and the last 16       the 96 between      2-7

Methods (each decodes a batch of token grids; -1 in `given` marks a token to generate):
    mebt            one iterative decode of the whole grid, every given token in the context from the start
    sliding window  a model of one 16-frame window (benchmarks/baselines_train.py), run CARRY latent frames into the
                    next window each time; where the gap to the known last frames closes, the window also holds
                    some of them, so it interpolates too
    autoregressive  token by token, sliding (mebt.baselines.generate_long): it cannot condition on frames that come
                    later, so in interpolation it gets the first frames only (the known last ones are pasted back
                    afterwards, for the pictures; they are never scored)
Every model call is counted, with its FLOPs (Metered). Scores per video (score_video): unconditional samples are
judged against themselves (their first frame, their modal objects, their object histograms); prediction and
interpolation against the generator's true objects and trajectories.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from mebt.baselines import generate_long
from mebt.consistency import (WINDOW, detect_objects, modal_objects, motion_plausibility, object_consistency,
                              object_histograms, object_persistence, per_window, persistence_failures,
                              trajectory_error)
from mebt.decoding import decode
from mebt.profiling import CPU_FLASH_FLOPS

CARRY = 2    # latent frames (8 video frames) the sliding window carries into the next window as context


@dataclass(frozen=True)
class Task:
    name: str
    first: int   # video frames given at the start
    last: int    # video frames given at the end

    def given(self, tokens: torch.Tensor, factor: int) -> torch.Tensor:
        """Real token grids (B, t, h, w) -> the same with -1 on every latent frame the method must generate."""
        given = torch.full_like(tokens, -1)
        first, last = self.first // factor, self.last // factor
        given[:, :first] = tokens[:, :first]
        given[:, tokens.shape[1] - last:] = tokens[:, tokens.shape[1] - last:]
        return given

    def windows(self, frames: int) -> list[int]:
        """Indices of the WINDOW-frame windows that hold generated frames: the ones scored."""
        return list(range(self.first // WINDOW, (frames - self.last) // WINDOW))


TASKS = (Task("unconditional", 0, 0), Task("prediction", WINDOW, 0), Task("interpolation", WINDOW, WINDOW))


class Metered(nn.Module):
    """A model whose calls are counted, with their FLOPs: FlopCounterMode on the first call of each input shape,
    reused afterwards (a call's cost depends on its shapes only). FLOPs are per video (divided by the batch); a
    call serves every video of the batch, so calls per video are the calls made. For inference only: the model's
    parameters stop requiring gradients (FlopCounterMode's module tracker trips over views of parameters that
    require them under no_grad, e.g. MeBT's latents expanded to the batch)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.cfg = model.requires_grad_(False), model.cfg
        self.flops_of: dict[tuple, float] = {}
        self.reset()

    def reset(self) -> None:
        self.calls, self.flops = 0, 0.0

    def forward(self, *args):
        # the shapes of the tensors, and a KV cache's fill level (its attention span), fix the cost
        key = tuple(tuple(a.shape) if torch.is_tensor(a) else getattr(a, "length", None) for a in args)
        self.calls += 1
        if key not in self.flops_of:
            counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)
            with counter:
                out = self.model(*args)
            self.flops_of[key] = counter.get_total_flops() / args[0].shape[0]
        else:
            out = self.model(*args)
        self.flops += self.flops_of[key]
        return out


def mebt_tokens(model: nn.Module, given: torch.Tensor, settings: dict, generator) -> torch.Tensor:
    """The whole (B, t, h, w) grid in one iterative decode; settings: decode() keyword arguments."""
    B, t, h, w = given.shape
    unknown = int((given[0] < 0).sum())
    settings = dict(settings, bootstrap=min(settings["bootstrap"], unknown))   # bootstrap reveals unknown tokens only
    return decode(model, B, (t, h, w), given=given.flatten(1), generator=generator, **settings)


def next_window(known: list[bool], t_window: int, carry: int) -> tuple[int, int, int, int]:
    """Where the sliding window goes next, for known[i] = latent frame i is known: (start, end, first, new), the
    window [start, end) whose unknown frames are the `new` ones from `first` (the first unknown frame) on.
    With nothing before them a whole window is new; else t_window - carry at most, after the known frames before.
    When they close the gap to known frames after, up to half the context slots hold those (a bidirectional model
    uses both sides), the rest the frames before."""
    first = known.index(False)
    gap = (known[first:] + [True]).index(True)                                # unknown frames from `first` on
    new = min(gap, t_window if first == 0 else t_window - carry)
    closes = new == gap
    after_known = (known[first + gap:] + [False]).index(False) if closes else 0   # known frames right after the gap
    after = min(after_known, (t_window - new) // 2)
    before = min(first, t_window - new - after)
    after = min(after_known, t_window - new - before)                         # slots the start left free
    return first - before, first + new + after, first, new


def sliding_window_tokens(model: nn.Module, given: torch.Tensor, settings: dict, generator,
                          carry: int = CARRY) -> torch.Tensor:
    """A (B, t, h, w) grid from a model of windows model.cfg.grid = (t_window, h, w): window after window
    (next_window), each decoded with every known token inside it as context (positions re-indexed from the
    window's start, as in training). Every video of the batch must know the same latent frames."""
    t_window = model.cfg.grid[0]
    if t_window <= carry:
        raise ValueError(f"sliding window: the model's grid {model.cfg.grid} needs more than {carry} latent frames")
    tokens = given.clone()
    known = (tokens >= 0).flatten(2).all(2)                                   # (B, t) per latent frame
    if not (known == known[0]).all():
        raise ValueError("sliding window: every video of a batch must know the same latent frames")
    known = known[0].tolist()
    while not all(known):
        start, end, first, new = next_window(known, t_window, carry)
        made = mebt_tokens(model, tokens[:, start:end], settings, generator)  # (B, end - start, h, w)
        tokens[:, first:first + new] = made[:, first - start:first - start + new]
        known[first:first + new] = [True] * new
    return tokens


def autoregressive_tokens(model: nn.Module, given: torch.Tensor, settings: dict, generator) -> torch.Tensor:
    """(B, t, h, w): given the known first latent frames only, the rest up to the last unknown frame token by
    token; known frames after that are pasted back unchanged (the model never sees them).
    settings: generate_long's sampling keywords (temperature, foreground_temperature, background_code)."""
    known = (given >= 0).flatten(2).all(2)[0].tolist()                        # (t,) per latent frame
    prime = known.index(False)
    end = len(known) - known[::-1].index(False)                               # one past the last unknown frame
    made = generate_long(model, len(given), end, given[:, :prime] if prime else None, generator=generator,
                         **settings)
    tokens = given.clone()
    tokens[:, :end] = made
    return tokens


def score_video(video: torch.Tensor, task: Task, truth=None, tracks=None) -> dict:
    """Per-window scores (one value per WINDOW frames of the whole video) of one (3, T, H, W) video.

    unconditional: persistence of its first frame's objects, consistency with its modal objects, motion, and
      its modal objects' histograms, its frame-1 object count, and why persistence fails: the share of frames
      that lost one of frame 1's objects, of those where a lost one is still in sight in another shape
      (reshaped), and of frames showing another colour (all three nan without objects).
      Others: persistence of the true objects, trajectory error and miss rate (tracks = true_tracks(truth),
      computed once per truth for all its videos)."""
    found = detect_objects(video)   # one detection shared by every metric
    scores = {"motion": motion_plausibility(video, found)}
    if task.first == 0:
        modal = modal_objects(video, found)
        if found.present[0].any():
            # persistence of frame 1's objects, and why frames fail it: an object lost, or other colours drawn
            lost, extra, reshaped = persistence_failures(video, None, found)        # (T,) each
            scores["persistence"] = per_window(~lost & ~extra)                      # = object_persistence(video)
            scores["lost"], scores["extra"] = per_window(lost), per_window(extra)
            scores["reshaped"] = per_window(reshaped)                               # lost, but in sight
        else:   # nothing kept = 0; nothing to lose: lost, reshaped and extra undefined, left out of the means
            scores["persistence"] = per_window(np.zeros(video.shape[1]))
            scores["lost"] = scores["extra"] = scores["reshaped"] = np.full_like(scores["persistence"], np.nan)
        scores["consistency"] = object_consistency(video, found)
        scores["histograms"] = object_histograms(modal)
        scores["without_objects"] = float(len(modal.colours) == 0)
        scores["first_count"] = int(found.present[0].sum())   # objects in frame 1: simpler scenes persist more easily
    else:
        scores["persistence"] = object_persistence(video, truth, found)
        scores["trajectory_error"], scores["miss_rate"] = trajectory_error(video, truth, found, tracks)
    return scores
