"""Plot quality along training: MeBT's unconditional persistence and held-out CE against the training step, one
line per run, from the JSONs of `bench.py quality` run on a run's kept checkpoints (train.py --keep-every).

    python train.py --stage transformer --keep-every 1400 --out-dir run_a      # run_a/mebt_step1400.pt, ...
    for c in run_a/mebt_step*.pt; do python bench.py quality --ckpt $c --methods mebt --tasks unconditional \
        --out-dir run_a/q_$(basename $c .pt); done
    python scripts/plot_quality_curve.py --out curve.png "batch 4=run_a/q_*/quality-cpu.json" "batch 8=run_b/q_*/quality-cpu.json"

Each point is MeBT at its default budget (the preset's decoding), with its 95% bootstrap CI over videos.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")   # files only: no screen needed
import matplotlib.pyplot as plt  # noqa: E402


def curve_points(paths: list[str]) -> list[dict]:
    """(step, persistence mean/low/high, held-out CE) of each JSON's default MeBT run, sorted by step."""
    points = []
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        runs = results.get("tasks", {}).get("unconditional", {}).get("runs", [])
        row = next((r for r in runs if r["method"] == "mebt" and r["default"]), None)
        if row is None:
            raise ValueError(f"{path}: no unconditional MeBT run at its default budget "
                             "(run bench.py quality with --methods mebt --tasks unconditional)")
        persistence = row["persistence"]["mean"]
        points.append(dict(step=results["steps"], mean=persistence["mean"], low=persistence["low"],
                           high=persistence["high"], ce=results["heldout_nll"]))
    return sorted(points, key=lambda p: p["step"])


def parse_run(spec: str) -> tuple[str, list[str]]:
    """'LABEL=GLOB' -> (label, the matching files)."""
    label, sep, pattern = spec.partition("=")
    if not sep or not label or not pattern:
        raise ValueError(f"{spec!r}: expected LABEL=GLOB, e.g. 'batch 4=run_a/q_*/quality-cpu.json'")
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise ValueError(f"{spec!r}: no file matches {pattern}")
    return label, paths


def plot(runs: dict[str, list[dict]], path: str) -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    for label, points in runs.items():
        steps = [p["step"] for p in points]
        means = [100 * p["mean"] for p in points]
        errors = [[100 * (p["mean"] - p["low"]) for p in points], [100 * (p["high"] - p["mean"]) for p in points]]
        line = top.errorbar(steps, means, yerr=errors, marker="o", capsize=3, label=label)
        bottom.plot(steps, [p["ce"] for p in points], marker="o", color=line[0].get_color(), label=label)
    top.set_ylabel("unconditional persistence (%)\n128 frames, 95% CI")
    top.set_ylim(0, 100)
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    bottom.set_ylabel("held-out CE (nats/token)\n50% masked")
    bottom.set_xlabel("training step")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"   # written whole, then renamed: an old plot is never left half-overwritten
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Persistence and held-out CE against training step, from bench.py "
                                            "quality JSONs (see the docstring for the whole recipe)")
    p.add_argument("runs", nargs="+", help="LABEL=GLOB, one per run; quote each, the glob is expanded here")
    p.add_argument("--out", required=True, help="the PNG to write")
    args = p.parse_args(argv)
    try:
        runs = {label: curve_points(paths) for label, paths in map(parse_run, args.runs)}
    except (ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    plot(runs, args.out)
    for label, points in runs.items():
        print(label + ": " + ", ".join(f"step {p['step']} {100 * p['mean']:.0f}% (CE {p['ce']:.3f})" for p in points))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
