"""scripts/plot_quality_curve.py: it reads MeBT's default-budget row of each quality JSON, orders a run's points
by training step, and refuses a JSON or a run spec it cannot use with one line."""
import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("plot_quality_curve", os.path.join(ROOT, "scripts", "plot_quality_curve.py"))
curve = importlib.util.module_from_spec(spec)
spec.loader.exec_module(curve)


def interval(mean):
    return {"mean": {"mean": mean, "low": mean - 0.1, "high": mean + 0.1}}


def write_result(path, step, default_mean, other_mean=0.9, ce=0.7):
    runs = [dict(method="tokenizer (real clips)", default=True, persistence=interval(0.99)),
            dict(method="mebt", default=False, persistence=interval(other_mean)),   # another budget: not plotted
            dict(method="mebt", default=True, persistence=interval(default_mean)),
            dict(method="sliding-window", default=True, persistence=interval(0.1))]
    path.write_text(json.dumps(dict(steps=step, heldout_nll=ce, tasks={"unconditional": dict(runs=runs)})))
    return str(path)


def test_points_are_mebt_at_its_default_budget_in_step_order(tmp_path):
    late = write_result(tmp_path / "late.json", 1400, 0.6, ce=0.70)
    early = write_result(tmp_path / "early.json", 700, 0.4, ce=0.90)
    points = curve.curve_points([late, early])
    assert [p["step"] for p in points] == [700, 1400]
    assert [p["mean"] for p in points] == [0.4, 0.6] and [p["ce"] for p in points] == [0.90, 0.70]
    assert points[0]["low"] == pytest.approx(0.3) and points[0]["high"] == pytest.approx(0.5)


def test_a_json_without_the_row_and_a_bad_spec_are_one_line_errors(tmp_path, capsys):
    no_mebt = tmp_path / "baselines.json"
    no_mebt.write_text(json.dumps(dict(steps=1, heldout_nll=1.0, tasks={"prediction": dict(runs=[])})))
    for argv, message in (([f"a={no_mebt}"], "no unconditional MeBT run at its default budget"),
                          (["no-equals-sign"], "expected LABEL=GLOB"),
                          ([f"a={tmp_path}/nothing*.json"], "no file matches")):
        assert curve.main([*argv, "--out", str(tmp_path / "c.png")]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "c.png")


def test_the_plot_is_written_for_several_runs(tmp_path):
    for run in ("a", "b"):
        for step, mean in ((700, 0.4), (1400, 0.6)):
            write_result(tmp_path / f"{run}{step}.json", step, mean)
    out = tmp_path / "curve.png"
    assert curve.main([f"run a={tmp_path}/a*.json", f"run b={tmp_path}/b*.json", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not os.path.exists(str(out) + ".tmp.png")
