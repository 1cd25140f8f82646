"""bench.py: the efficiency rows (structure, linear vs super-linear growth), the quality aggregation per
window, the sliding-window baseline's conditioning, and one-line errors for bad flags.

    python -m pytest -q tests/test_bench.py
"""
import json
from dataclasses import replace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import bench
from benchmarks import common, efficiency, quality
from mebt.config import ModelConfig
from mebt.data import make_synthetic_video, render

KEYS = {"model", "width", "frames", "tokens", "train_flops", "train_saved_bytes", "train_step_s", "generate_s"}


def test_efficiency_writes_rows_with_linear_mebt_and_quadratic_materialised(tmp_path, monkeypatch):
    # keep the test short: time only the 16-frame shapes, once each; 64 frames are counted on meta
    monkeypatch.setattr(efficiency, "QUICK_FRAMES", 16)
    monkeypatch.setattr(common, "REPEATS", 1)
    efficiency.run_efficiency(["tiny"], [16, 64], torch.device("cpu"), quick=True, out_dir=str(tmp_path))
    rows = json.loads((tmp_path / "efficiency-cpu.json").read_text())
    assert (tmp_path / "efficiency-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted((r["model"], r["frames"]) for r in rows) == sorted(
        (m, f) for m in efficiency.MODELS for f in (16, 64))
    by = {(r["model"], r["frames"]): r for r in rows}
    for r in rows:
        assert KEYS <= set(r), f"missing keys {KEYS - set(r)}"
        assert r["width"] == "tiny" and r["tokens"] == r["frames"] // 4 * 8 * 8
        assert r["train_flops"] > 0 and r["train_saved_bytes"] > 0
        if r["frames"] == 16:   # timed for real; generation only for the two generative models
            assert r["train_step_s"] > 0 and r["note"] is None and r["counted_on"] == "cpu"
            assert (r["generate_s"] is not None) == (r["model"] in ("mebt", "ar"))
        else:
            assert r["train_step_s"] is None and r["generate_s"] is None
            assert r["note"].startswith("counted, not timed") and r["counted_on"] == "meta"
    assert by[("mebt", 16)]["generate_calls"] == efficiency.DECODE_STEPS and by[("ar", 16)]["generate_calls"] == 256
    # 4x the frames: MeBT's activations grow at most linearly, materialised attention's well beyond
    growth = {m: by[(m, 64)]["train_saved_bytes"] / by[(m, 16)]["train_saved_bytes"] for m in efficiency.MODELS}
    assert growth["mebt"] <= 4 * 1.05, growth
    assert growth["full-materialised"] >= 1.5 * 4, growth
    assert by[("full-materialised", 64)]["train_saved_bytes"] > 10 * by[("mebt", 64)]["train_saved_bytes"]


def test_ratio_lines_compare_each_baseline_with_mebt():
    def row(model, frames, saved, flops, step=None):
        return dict(model=model, width="tiny", frames=frames, train_saved_bytes=saved, train_flops=flops,
                    train_step_s=step, generate_s=None)
    rows = [row("mebt", 16, 10, 100, 1.0), row("full", 16, 30, 500, 2.5), row("mebt", 128, 80, 800),
            row("full", 128, 240, 4000)]
    lines = "\n".join(efficiency.ratio_lines(rows))
    assert "full               tiny    16 frames: memory x3.00, FLOPs x5.00, step time x2.50" in lines
    assert "mebt               tiny  16->128 frames (linear x8): memory x8.00, FLOPs x8.00" in lines


def without_first_object(truth):
    rest = slice(1, None)
    return replace(truth, positions=truth.positions[:, rest], velocities=truth.velocities[rest],
                   colours=truth.colours[rest], shapes=truth.shapes[rest], radius=truth.radius[rest])


def test_window_scores_average_per_window_over_videos():
    (a, truth_a), (b, truth_b) = (make_synthetic_video(seed, frames=128, resolution=32) for seed in (18, 22))
    for references in (None, [truth_a, truth_b]):   # own first frame, or the true objects
        clean = quality.window_scores([a, b], references)
        assert clean["persistence"] == [1.0] * 8 and clean["persistence_mean"] == 1.0
        assert clean["videos_fully_persistent"] == 1.0 and clean["videos_without_objects"] == 0.0
        assert clean["reference_objects"] == (len(truth_a.colours) + len(truth_b.colours)) / 2
    assert clean["motion"] == [1.0] * 8          # video 0 has no judged move in windows 1, 5, 7: video 1's count alone
    removed = b.clone()
    removed[:, 64:] = render(without_first_object(truth_b))[:, 64:]   # video 1 loses an object at frame 64
    scores = quality.window_scores(torch.stack([a, removed]))
    assert scores["persistence"] == [1.0] * 4 + [0.5] * 4
    assert scores["persistence_mean"] == 0.75 and scores["videos_fully_persistent"] == 0.5
    alone = quality.window_scores([a])
    assert alone["motion"][4] is None             # nothing judged there: JSON null, not NaN
    json.dumps(alone, allow_nan=False)


def test_a_video_without_objects_keeps_nothing():
    video, truth = make_synthetic_video(2, frames=32, resolution=32)
    none = slice(0, 0)
    empty = render(replace(truth, positions=truth.positions[:, none], velocities=truth.velocities[none],
                           colours=truth.colours[none], shapes=truth.shapes[none], radius=truth.radius[none]))
    scores = quality.window_scores([video, empty])
    assert scores["persistence"] == [0.5, 0.5] and scores["videos_without_objects"] == 0.5
    # judged against the true objects, the empty video fails as well
    assert quality.window_scores([empty], [truth])["persistence"] == [0.0, 0.0]


class CopyTwoBackPlusOne(nn.Module):
    """Stand-in model: a target's token is the token two latent frames earlier plus one (0 if that is unknown)."""

    def __init__(self, grid, vocab=16):
        super().__init__()
        self.cfg = ModelConfig(vocab_size=vocab, grid=grid)
        self.anchor = nn.Parameter(torch.zeros(1))   # decode() looks for the model's device

    def forward(self, context_tokens, context_pos, target_pos):
        B, (_, h, w), V = target_pos.shape[0], self.cfg.grid, self.cfg.vocab_size
        known = torch.full((B, self.cfg.n_positions), -1, dtype=torch.long)
        known.scatter_(1, context_pos, context_tokens)                        # (B, N) -1 = not in the context
        source = target_pos - 2 * h * w                                       # same place, two latent frames back
        earlier = known.gather(1, source.clamp(min=0))
        token = torch.where((source >= 0) & (earlier >= 0), (earlier + 1) % V, 0)   # (B, Nm)
        return 50.0 * F.one_hot(token, V).float()                             # (B, Nm, V): near-certain


def test_sliding_window_extends_from_the_previous_frames():
    model = CopyTwoBackPlusOne((4, 2, 3))
    g = torch.Generator().manual_seed(0)
    tokens = quality.sliding_window_tokens(model, 2, 9, generator=g, steps=4)   # 4 + 2 + 2 + 2 frames, cut to 9
    assert tokens.shape == (2, 9, 2, 3)
    # every frame after the first window was generated given the two frames before it, at the right offset
    for f in range(4, 9):
        assert torch.equal(tokens[:, f], (tokens[:, f - 2] + 1) % 16), f"latent frame {f}"
    with pytest.raises(ValueError, match="more than 2 latent frames"):
        quality.sliding_window_tokens(CopyTwoBackPlusOne((2, 2, 3)), 1, 8)


@pytest.mark.parametrize("argv, match", [
    (["efficiency", "--frames", "16,18"], "--frames: 18 must be a positive multiple of 4"),
    (["efficiency", "--widths", "tiny,huge"], "--widths 'tiny,huge'"),
    (["efficiency", "--frames", "16,x"], "--frames '16,x'"),
    (["efficiency", "--threads", "0"], "--threads 0"),
])
def test_bad_flags_are_one_line_errors(argv, match, tmp_path):
    with pytest.raises(ValueError, match=match) as error:
        bench.main(argv + ["--device", "cpu", "--out-dir", str(tmp_path)])
    assert "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())   # nothing written before the check


def test_quality_needs_an_existing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        bench.main(["quality", "--ckpt", str(tmp_path / "missing.pt"), "--device", "cpu", "--out-dir", str(tmp_path)])
