"""bench.py: the efficiency rows (structure, linear vs super-linear growth) and one-line errors for bad flags.
The quality benchmark has its own tests (tests/test_quality.py).

    python -m pytest -q tests/test_bench.py
"""
import json

import pytest
import torch

import bench
from benchmarks import common, efficiency

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
