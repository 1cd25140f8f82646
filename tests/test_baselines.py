"""mebt/baselines.py's long autoregressive generation: the sliding window carries the right frames, at the right
positions, one model call per sampled token; a cached prefix predicts what the full forward predicts.

    python -m pytest -q tests/test_baselines.py
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mebt.baselines import AutoregressiveBaseline, generate_long
from mebt.config import ModelConfig

V = 16


class PreviousFramePlusOne(nn.Module):
    """Stand-in AR model: the next token is the one a latent frame earlier *in its window* plus one (0 in the
    window's first frame). It sees only what was fed since the cache was last emptied, like the real model."""

    def __init__(self, grid):
        super().__init__()
        self.cfg = ModelConfig(vocab_size=V, grid=grid)
        self.anchor = nn.Parameter(torch.zeros(1))   # generate_long looks for the model's device
        self.calls = 0

    def forward(self, tokens, cache):
        self.calls += 1
        self.fed = tokens if cache.length == 0 else torch.cat([self.fed, tokens], 1)   # (B, tokens in the window)
        cache.length = self.fed.shape[1] + 1                                             # [START] + the tokens
        frame = self.cfg.grid[1] * self.cfg.grid[2]
        i = self.fed.shape[1]                                                            # the slot to predict
        token = (self.fed[:, i - frame] + 1) % V if i >= frame else torch.zeros(len(tokens), dtype=torch.long)
        return 50.0 * F.one_hot(token, V).float()                                        # (B, V): near-certain


@pytest.mark.parametrize("carry", [1, 3])
def test_sliding_window_continues_from_the_carried_frames(carry):
    model = PreviousFramePlusOne((4, 2, 3))
    video = generate_long(model, 2, 11, carry=carry, generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 11, 2, 3)
    for f in range(11):   # frame 0 is zeros; every later frame, in whatever window, is the one before plus one
        assert (video[:, f] == f % V).all(), f"latent frame {f}"
    assert model.calls == 11 * 6                                                         # one call per token


def test_prime_is_kept_and_continued():
    model = PreviousFramePlusOne((4, 2, 3))
    prime = torch.full((2, 5, 2, 3), 7)                                                  # longer than a window
    video = generate_long(model, 2, 9, prime=prime)
    assert torch.equal(video[:, :5], prime)
    assert [int(video[0, f, 0, 0]) for f in range(5, 9)] == [8, 9, 10, 11]
    assert model.calls == 4 * 6
    with pytest.raises(ValueError, match="carry=4"):
        generate_long(model, 1, 9, carry=4)


def test_last_window_agrees_with_the_full_forward():
    """Greedy decoding: every token of the last window is the argmax of the full (uncached) forward on that window,
    so the prefix fed in one call and the cached steps after it see what training saw."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=V, grid=(4, 2, 3), d_model=32, n_heads=2, n_latents=4,
                      encoder_layers=("cross", "self"), decoder_layers=("read",))
    model = AutoregressiveBaseline(cfg).eval()
    video = generate_long(model, 2, 7, top_k=1)                                          # (B, 7, 2, 3)
    window = video[:, 3:].flatten(1)                                                     # the last window: 3 + 1 frames
    predicted = model(window).argmax(-1)                                                 # (B, 24)
    assert torch.equal(predicted[:, 18:], window[:, 18:])                                # its one new frame


def test_autoregressive_draws_use_the_same_foreground_sharpening_as_mebt():
    from mebt.baselines import sample_token
    p = torch.tensor([0.1, 0.1, 0.6, 0.2])                             # code 2 is the background
    logits = p.log().expand(40000, 4)
    g = torch.Generator().manual_seed(3)
    drawn = sample_token(logits, 1.0, None, g, foreground_temperature=0.5, background_code=2).flatten()
    freq = torch.bincount(drawn, minlength=4).float() / drawn.numel()
    rest = torch.tensor([0.01, 0.01, 0.04])
    expected = torch.tensor([0.4 * rest[0] / rest.sum(), 0.4 * rest[1] / rest.sum(), 0.6, 0.4 * rest[2] / rest.sum()])
    assert torch.allclose(freq, expected, atol=0.015)
