"""`bench.py throughput` on a micro preset: its figures are consistent with each other and with what they count.

    python -m pytest -q tests/test_throughput.py
"""
import json

import pytest
import torch
from test_train import micro_config

import bench
import benchmarks.throughput as throughput
from mebt.model import MeBT
from mebt.profiling import count_train_step, masked_batch


@pytest.fixture
def micro(monkeypatch):
    """The micro config (16 frames -> 4x4x4 tokens) stands in for every preset."""
    settings = dict(sample_steps=3, sample_bootstrap=5, sample_revise=2)
    monkeypatch.setattr(throughput, "get_preset", lambda name: micro_config(**settings))
    return micro_config(**settings)


def run(tmp_path, *flags) -> dict:
    bench.main(["throughput", "--frames", "16", "--steps", "2", "--device", "cpu", "--out-dir", str(tmp_path), *flags])
    (path,) = tmp_path.glob("throughput-tiny-16f-*.json")
    return json.loads(path.read_text())


def test_counts_calls_flops_and_derives_rates_from_one_measurement(micro, tmp_path):
    result = run(tmp_path, "--peak-tflops", "0.5")
    s = result["sampling"]
    assert s["mebt_calls"] == 5 + 3 + 2 * 2                      # bootstrap + steps + 2 x revise: every call
    assert s["ar_calls"] == 64 and s["mebt_flops"] > 0 and s["ar_flops_upper_bound"] > 0
    assert s["speedup"] == pytest.approx(s["ar_s"] / s["mebt_s"])
    (row,) = result["train"]
    with torch.device("meta"):
        model = MeBT(micro.model)
    counted = count_train_step(model, masked_batch(micro.model, 4, row["batch_size"]), torch.device("meta"))
    assert row["batch_size"] == micro.train.batch_size and row["flops"] == counted["flops"]
    assert row["tokens_per_s"] == pytest.approx(row["batch_size"] * 64 / row["step_s"])
    assert row["tflops_per_s"] == pytest.approx(row["flops"] / row["step_s"] / 1e12)
    assert row["mfu"] == pytest.approx(row["tflops_per_s"] / 0.5) and result["peak_source"] == "--peak-tflops"


def test_a_cpu_has_no_known_peak_and_big_shapes_are_counted_not_timed(micro, tmp_path, monkeypatch):
    monkeypatch.setattr(throughput, "CPU_BUDGET_FLOPS", 1)       # everything is "too big" for this CPU
    result = run(tmp_path, "--dtype", "bf16", "--batch-size", "3")
    assert result["peak_tflops"] is None and "unknown" in result["peak_source"]
    (row,) = result["train"]
    assert row["batch_size"] == 3 and row["flops"] > 0 and row["step_s"] is None and row["mfu"] is None
    assert "mebt_s" not in result["sampling"] and result["sampling"]["mebt_flops"] > 0
    assert len(result["notes"]) == 2


def test_peak_table_matches_the_most_specific_device_name(monkeypatch):
    cuda = torch.device("cuda", 0)
    for name, dtype, peak in (("NVIDIA H100 80GB HBM3", "bf16", 989), ("NVIDIA H100 PCIe", "bf16", 756),
                              ("NVIDIA H200", "fp32", 67), ("NVIDIA H200 NVL", "bf16", 835),
                              ("NVIDIA A100-SXM4-80GB", "bf16", 312)):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device, name=name: name)
        assert throughput.peak_tflops(cuda, dtype, None)[0] == peak, name
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA GeForce RTX 4090")
    assert throughput.peak_tflops(cuda, "bf16", None) == (None, "peak unknown for 'NVIDIA GeForce RTX 4090' "
                                                                "(pass --peak-tflops)")
    assert throughput.peak_tflops(cuda, "bf16", 123.0) == (123.0, "--peak-tflops")


@pytest.mark.parametrize("flags, message", [(["--batch-size", "max"], "needs --device cuda"),
                                            (["--batch-size", "0"], "positive integer or 'max'"),
                                            (["--frames", "10"], "multiple of 4"),
                                            (["--steps", "0"], "at least 1")])
def test_bad_flags_are_one_line_errors(micro, tmp_path, flags, message):
    with pytest.raises(ValueError, match=message):
        bench.main(["throughput", "--device", "cpu", "--out-dir", str(tmp_path), *flags])
    assert not list(tmp_path.iterdir())                           # nothing written
