"""Tests for mebt/quantizer.py and mebt/tokenizer.py: shapes for every preset, EMA codebook, dead-code restarts,
straight-through gradients, over-fitting a few clips, clear errors on bad input.

    python -m pytest -q tests/test_tokenizer.py
"""
import dataclasses
import math

import pytest
import torch

from mebt.config import TokenizerConfig, get_preset
from mebt.data import make_synthetic_video
from mebt.quantizer import VectorQuantizer
from mebt.tokenizer import VQTokenizer, psnr, stage_strides

# A narrow tiny tokenizer: same strides and grid as the preset, cheap enough to train inside a test.
NARROW = TokenizerConfig(channels=16, codebook_size=64, code_dim=16)


def clips(n: int, frames: int = 16) -> torch.Tensor:
    """n fixed synthetic clips (n, 3, frames, 32, 32) from the built-in data."""
    return torch.stack([make_synthetic_video(seed, frames=frames, resolution=32)[0] for seed in range(n)])


# ---------------------------------------------------------------------------------------------- shapes


def test_stage_strides_follow_the_factors():
    assert stage_strides(4, 4) == [(2, 2, 2), (2, 2, 2)]
    assert stage_strides(4, 8) == [(2, 2, 2), (2, 2, 2), (1, 2, 2)]
    assert stage_strides(1, 2) == [(1, 2, 2)]


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_encode_decode_shapes_every_preset(preset):
    cfg = get_preset(preset)
    tk = cfg.tokenizer
    t, s = tk.temporal_downsample, tk.spatial_downsample
    if preset == "paper":
        # 39M parameters: build it on the meta device (no memory, no compute) and run its real 128x128 clip size
        with torch.device("meta"):
            tokenizer = VQTokenizer(tk).eval()
            video = torch.zeros(2, 3, 16, cfg.data.resolution, cfg.data.resolution)
            indices = tokenizer.encode(video)
            recon = tokenizer.decode(indices)
    else:
        torch.manual_seed(0)
        tokenizer = VQTokenizer(tk).eval()
        video = torch.rand(2, 3, 8, 2 * s, 4 * s) * 2 - 1             # small, non-square input: cheap on a CPU
        indices = tokenizer.encode(video)
        recon = tokenizer.decode(indices)
        assert indices.dtype == torch.long and 0 <= indices.min() and indices.max() < tk.codebook_size
        assert recon.min() >= -1 and recon.max() <= 1
    T, H, W = video.shape[2:]
    assert indices.shape == (2, T // t, H // s, W // s)
    assert recon.shape == video.shape


def test_tiny_preset_clip_gives_the_model_grid():
    cfg = get_preset("tiny")
    tokenizer = VQTokenizer(cfg.tokenizer).eval()
    video = clips(1, frames=cfg.data.frames)                            # a full 128-frame clip in one call
    assert tuple(tokenizer.encode(video).shape[1:]) == cfg.token_grid == tuple(cfg.model.grid)


def test_decode_of_encode_equals_forward_reconstruction_in_eval():
    torch.manual_seed(0)
    tokenizer = VQTokenizer(NARROW).eval()
    video = clips(2)
    out = tokenizer(video)
    assert torch.equal(tokenizer.encode(video), out.indices)
    assert torch.allclose(tokenizer.decode(out.indices), out.recon, atol=1e-5)   # z_e + (z_q - z_e) rounds
    assert out.recon.shape == video.shape and out.indices.shape == (2, 4, 8, 8)
    assert torch.isclose(out.loss, out.recon_loss + out.commit_loss)


def test_psnr_matches_definition():
    a = torch.zeros(1, 3, 4, 8, 8)
    assert math.isclose(psnr(a, a + 0.02), 10 * math.log10(4 / 0.02 ** 2), rel_tol=1e-6)   # 40 dB
    assert math.isclose(psnr(-torch.ones(1, 3), torch.ones(1, 3)), 0.0, abs_tol=1e-6)       # opposite extremes: 0 dB


# ---------------------------------------------------------------------------------------------- quantizer


def test_nearest_code_and_usage_perplexity():
    vq = VectorQuantizer(codebook_size=8, code_dim=2).eval()
    vq.codebook.copy_(torch.arange(16.0).view(8, 2) * 10)              # codes far apart: (0,10), (20,30), ...
    z = vq.codebook[[0, 1, 2, 3] * 2] + 0.1                            # 4 codes, twice each, slightly offset
    out = vq(z.view(2, 4, 2))
    assert out.indices.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    assert torch.equal(out.quantized, vq.codebook[[0, 1, 2, 3] * 2].view(2, 4, 2))   # forward value is z_q
    assert out.usage.item() == 0.5                                      # 4 of 8 codes
    assert math.isclose(out.perplexity.item(), 4.0, rel_tol=1e-4)       # uniform over 4 codes
    assert math.isclose(out.commit_loss.item(), 0.25 * 0.1 ** 2, rel_tol=1e-4)


def test_ema_moves_assigned_codes_toward_their_vectors_only_in_training():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=4, code_dim=2, decay=0.9, dead_code_threshold=0.0)   # no restarts here
    start = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    vq.codebook.copy_(start)
    vq.cluster_size.fill_(5.0)                                          # as if each code had 5 vectors per batch
    vq.embed_sum.copy_(start * 5.0)
    z = torch.tensor([[1.0, 1.0], [1.0, 1.0], [11.0, 1.0]])             # two vectors near code 0, one near code 1
    vq.eval()
    vq(z)
    assert torch.equal(vq.codebook, start)                              # eval mode never touches the codebook
    vq.train()
    for _ in range(50):
        vq(z)
    assert torch.allclose(vq.codebook[0], torch.tensor([1.0, 1.0]), atol=0.05)   # moved onto its vectors' mean
    assert torch.allclose(vq.codebook[1], torch.tensor([11.0, 1.0]), atol=0.05)
    # unused codes stay put: their sums and counts decay together (Laplace smoothing moves them by ~0.04%)
    assert torch.allclose(vq.codebook[2:], start[2:], atol=1e-2)
    # one EMA step from a known state: count 5 -> 0.9*5 + 0.1*2 = 4.7 for code 0
    vq.cluster_size.fill_(5.0); vq.embed_sum.copy_(start * 5.0); vq.codebook.copy_(start)
    vq(z)
    assert math.isclose(vq.cluster_size[0].item(), 4.7, rel_tol=1e-6)
    expected = (0.9 * start[0] * 5 + 0.1 * torch.tensor([2.0, 2.0])) / 4.7   # EMA sum / EMA count
    assert torch.allclose(vq.codebook[0], expected, atol=1e-3)          # Laplace smoothing shifts it by ~1e-5


def test_dead_codes_are_restarted_on_batch_vectors():
    torch.manual_seed(0)
    vq = VectorQuantizer(codebook_size=8, code_dim=3, decay=0.99, dead_code_threshold=1.0)
    vq.codebook.copy_(torch.randn(8, 3) + 100.0)                        # far from the data
    vq.cluster_size.fill_(1.005)                                        # just alive; one empty batch kills a code
    vq.embed_sum.copy_(vq.codebook * 1.005)
    z = torch.randn(64, 3)
    used = torch.unique(vq.nearest(z))                                  # the code(s) closest to the whole batch
    dead = torch.ones(8, dtype=torch.bool)
    dead[used] = False
    out = vq(z)
    # codes that got nothing: EMA usage 0.99 * 1.005 < 1 -> restarted on one of this batch's vectors
    matches = (vq.codebook[:, None, :] == z[None]).all(-1)             # (K, N)
    assert matches[dead].any(1).all()
    assert torch.all(vq.cluster_size[dead] == 1.0)
    assert torch.all(vq.cluster_size[~dead] > 1.0) and not matches[~dead].any()   # used codes are kept
    # the returned tokens already refer to the restarted codebook, and the batch now uses several codes
    assert torch.equal(out.indices, vq.nearest(z))
    assert out.usage.item() > 2 / 8


def test_straight_through_gradient_reaches_the_encoder():
    vq = VectorQuantizer(codebook_size=8, code_dim=4).eval()
    z = torch.randn(5, 4, requires_grad=True)
    weights = torch.randn(5, 4)
    (vq(z).quantized * weights).sum().backward()
    assert torch.allclose(z.grad, weights)                              # identity through the quantizer
    torch.manual_seed(0)
    tokenizer = VQTokenizer(NARROW)
    tokenizer(clips(1)).recon_loss.backward()                           # the decoder's loss alone
    first_conv = tokenizer.encoder.net[0].weight
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- training


def test_tiny_tokenizer_overfits_a_few_clips():
    # Measured (seeds 0-2): 26.9-27.6 dB after 200 steps, ~3 s on one core; 25 dB leaves a margin for
    # floating-point differences between machines and thread counts.
    torch.manual_seed(0)
    tokenizer = VQTokenizer(NARROW)
    video = clips(2)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=3e-3)
    for _ in range(200):
        out = tokenizer(video)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    tokenizer.eval()
    assert psnr(tokenizer(video).recon, video) >= 25.0


# ---------------------------------------------------------------------------------------------- errors


def test_bad_input_raises_clear_errors():
    tokenizer = VQTokenizer(NARROW)
    with pytest.raises(ValueError, match="expected video of shape"):
        tokenizer.encode(torch.zeros(3, 16, 32, 32))                     # missing batch dim
    with pytest.raises(ValueError, match="multiple of 4"):
        tokenizer.encode(torch.zeros(1, 3, 10, 32, 32))                  # T not a multiple of 4
    with pytest.raises(ValueError, match="multiples of 4"):
        tokenizer(torch.zeros(1, 3, 16, 30, 32))
    with pytest.raises(ValueError, match="integer tokens"):
        tokenizer.decode(torch.zeros(1, 4, 8, 8))                        # float indices
    with pytest.raises(ValueError, match=r"in \[0, 64\)"):
        tokenizer.decode(torch.full((1, 4, 8, 8), -1))                   # an "unknown" marker left in the grid
    small_ints = torch.randint(64, (1, 4, 8, 8))
    assert torch.equal(tokenizer.decode(small_ints.short()), tokenizer.decode(small_ints))   # token-cache int16
    with pytest.raises(ValueError, match="power of two"):
        VQTokenizer(dataclasses.replace(NARROW, spatial_downsample=6))
    with pytest.raises(ValueError, match="code_dim"):
        VectorQuantizer(8, 4)(torch.zeros(2, 5))
