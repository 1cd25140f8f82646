"""What `bench.py quality` shows of its results: the printed table (methods at their budgets, side by side), the
plot (each headline score per window, and against model calls and FLOPs per video) and the side-by-side GIF."""
from __future__ import annotations

import numpy as np
import torch

from mebt.video_io import save_video

PLOTTED = (("unconditional", "persistence"), ("unconditional", "consistency"), ("prediction", "persistence"),
           ("prediction", "trajectory_error"), ("interpolation", "persistence"), ("interpolation", "trajectory_error"))
LABELS = dict(persistence="persistence", lost="frame-1 object lost", reshaped="... in another shape",
              extra="other colour drawn",
              consistency="consistency", motion="motion",
              trajectory_error="trajectory error (px)", miss_rate="missed sightings")
COLUMNS = {"unconditional": ("persistence", "lost", "reshaped", "extra", "consistency", "motion"),
           "prediction": ("persistence", "trajectory_error", "miss_rate", "motion"),
           "interpolation": ("persistence", "trajectory_error", "miss_rate", "motion")}


def label(row: dict) -> str:
    """A row's method, and what it was given if that differs from the task's promise."""
    return row["method"] + ("" if row["uses_last_frames"] else " (first frames only)")


def ci(interval: dict, metric: str) -> str:
    """'43.1 [38.2, 47.9]': rates in %, errors in pixels; '-' where no video defines it."""
    if interval["mean"] is None:
        return "-"
    scale, digits = (1, 2) if metric == "trajectory_error" else (100, 1)
    mean, low, high = (interval[k] * scale for k in ("mean", "low", "high"))
    return f"{mean:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def print_table(results: dict) -> None:
    """One table per task, rows ordered by method and calls: read across a column at equal calls."""
    print(f"\n{results['num_videos']} held-out videos per method; mean over the generated windows [95% bootstrap CI "
          f"over videos]; rates and total variation distances (TV) in %, trajectory error in pixels; calls and GFLOP "
          f"per video (transformer only)")
    for name, task in results["tasks"].items():
        columns = COLUMNS[name]
        print(f"\n{name} (windows starting at frame {', '.join(map(str, task['windows']))})")
        header = f"{'method':38s} {'budget':20s} {'calls':>6s} {'GFLOP':>8s} {'s':>6s}"
        header += "".join(f" {LABELS[c][:22]:>22s}" for c in columns)
        if name == "unconditional":
            header += (f" {'no object':>9s} {'TV count':>18s} {'TV colour':>18s} {'TV shape':>18s}"
                       f" {'persist. @data counts':>22s}")
        print(header)
        for row in task["runs"]:
            line = (f"{label(row):38s} {row['budget']:20s} {row['calls']:6.0f} {row['flops'] / 1e9:8.1f} "
                    f"{row['seconds']:6.0f}" + "".join(f" {ci(row[c]['mean'], c):>22s}" for c in columns))
            if name == "unconditional":
                line += f" {row['videos_without_objects']:9d}" + "".join(
                    f" {ci(row['diversity_tv'][k], 'tv'):>18s}" for k in ("count", "colour", "shape"))
                if "persistence_at_data_counts" in row:   # absent from JSONs written before it existed
                    line += f" {ci(row['persistence_at_data_counts']['mean'], 'persistence'):>22s}"
            print(line)


def plot_quality(results: dict, path: str) -> None:
    """Rows: a task's headline score. Columns: per window (each method at its default budget), against model
    calls per video, against decoding FLOPs per video (every budget; bars: 95% CIs)."""
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = [(task, metric) for task, metric in PLOTTED if task in results["tasks"]]   # the tasks that ran
    fig, axes = plt.subplots(len(plotted), 3, figsize=(16, 3.6 * len(plotted)), squeeze=False)
    colours = {}
    for (task_name, metric), row_axes in zip(plotted, axes):
        task = results["tasks"][task_name]
        for row in task["runs"]:
            colour = colours.setdefault(row["method"], f"C{len(colours)}")
            if row["default"]:
                values = np.array([[np.nan if w[k] is None else w[k] for k in ("mean", "low", "high")]
                                   for w in row[metric]["windows"]])                   # (windows, 3)
                row_axes[0].errorbar(np.array(task["windows"]) + 0.0, values[:, 0],
                                     yerr=np.abs(values[:, 1:].T - values[:, 0]), marker="o", capsize=3,
                                     color=colour, label=label(row))
        for axis, key, unit in ((row_axes[1], "calls", 1), (row_axes[2], "flops", 1e9)):
            for method in dict.fromkeys(r["method"] for r in task["runs"] if r["calls"]):
                runs = sorted((r for r in task["runs"] if r["method"] == method), key=lambda r: r["calls"])
                points = [(r[key] / unit, r[metric]["mean"]) for r in runs if r[metric]["mean"]["mean"] is not None]
                if points:
                    x = [p[0] for p in points]
                    y = np.array([[p[1]["mean"], p[1]["low"], p[1]["high"]] for p in points])
                    axis.errorbar(x, y[:, 0], yerr=np.abs(y[:, 1:].T - y[:, 0]), marker="o", capsize=3,
                                  color=colours[method], label=label(runs[0]))
            axis.set_xscale("log")
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # "2x10^1 3x10^1 ..." overlap
            axis.set_xlabel("model calls per video" if key == "calls" else "decoding GFLOP per video")
        row_axes[0].set_xlabel(f"first frame of the {results['window']}-frame window")
        for axis in row_axes:
            axis.set_ylabel(f"{task_name}: {LABELS[metric]}")
            axis.grid(True, alpha=0.3)
            if metric != "trajectory_error":
                axis.set_ylim(-0.05, 1.05)
            if axis.get_legend_handles_labels()[0]:   # an empty panel (nothing defined there) has no legend
                axis.legend(fontsize=7)
    fig.suptitle(f"{results['num_videos']} held-out videos per method, {results['frames']} frames; means with 95% "
                 "bootstrap CIs over videos (exact ground-truth checks, not FVD)")
    fig.tight_layout(rect=(0, 0, 1, 0.98))   # leave the top strip to the title
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_side_by_side(path: str, real: torch.Tensor, videos: dict[str, torch.Tensor]) -> None:
    """A GIF with one row per held-out video: the real clip, then each method's video from its first 16 frames."""
    columns = [real] + list(videos.values())                             # in the order the methods ran
    stacked = torch.stack(columns, dim=1).flatten(0, 1)                   # (rows * 4, 3, T, H, W), row-major
    save_video(path, stacked, nrow=len(columns))
