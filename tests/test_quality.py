"""bench.py quality: the tasks' given frames and scored windows, where the sliding window goes (and that it uses
known frames on both sides), per-video scores on ground truth, and --quick end to end on a micro checkpoint.

    python -m pytest -q tests/test_quality.py
"""
import dataclasses
import json
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import bench
from benchmarks import baselines_train, quality, tasks
from mebt.checkpoint import fingerprint, save_checkpoint
from mebt.config import Config, DataConfig, ModelConfig, TokenizerConfig, TrainConfig
from mebt.data import make_synthetic_video, render
from mebt.distributed import rng_state
from mebt.model import MeBT
from mebt.profiling import CPU_FLASH_FLOPS
from mebt.pipeline import load_mebt, sampling_settings
from mebt.tokenizer import VQTokenizer

UNCONDITIONAL, PREDICTION, INTERPOLATION = tasks.TASKS
MEBT_BUDGETS, SLIDING_BUDGETS = quality.MEBT_BUDGETS, quality.SLIDING_BUDGETS


def test_tasks_give_real_frames_and_score_the_generated_windows():
    tokens = torch.arange(32).view(1, 32, 1, 1).expand(2, 32, 2, 2)                 # latent frame i holds i
    assert (UNCONDITIONAL.given(tokens, 4) == -1).all()
    interpolation = INTERPOLATION.given(tokens, 4)
    assert torch.equal(interpolation[:, :4], tokens[:, :4]) and torch.equal(interpolation[:, 28:], tokens[:, 28:])
    assert (interpolation[:, 4:28] == -1).all() and (PREDICTION.given(tokens, 4)[:, 4:] == -1).all()
    assert [t.windows(128) for t in tasks.TASKS] == [list(range(8)), list(range(1, 8)), list(range(1, 7))]


def walk(known, t_window=4, carry=2):
    """Every window next_window picks until all latent frames are known."""
    known, windows = list(known), []
    while not all(known):
        start, end, first, new = tasks.next_window(known, t_window, carry)
        assert all(known[start:first]) and all(known[first + new:end]) and not any(known[first:first + new])
        windows.append((start, end, first, new))
        known[first:first + new] = [True] * new
    return windows


def test_sliding_window_placement():
    unconditional = walk([False] * 32)
    assert unconditional[0] == (0, 4, 0, 4) and len(unconditional) == 15            # 4 + 14 x 2 latent frames
    assert all(w == (f - 2, f + 2, f, 2) for w, f in zip(unconditional[1:], range(4, 32, 2)))
    between = walk([True] * 4 + [False] * 24 + [True] * 4)
    assert between[0] == (2, 6, 4, 2) and between[-1] == (25, 29, 26, 2)           # the last one sees frame 28
    assert walk([False] * 9)[-1] == (5, 9, 8, 1)                                    # a short tail: more context


class NeighbourRule(nn.Module):
    """Stand-in window model: a target is the token two latent frames earlier plus one, else 0 (near-certain
    logits); with look_ahead, first the token one frame *later* minus one, if that is in the context."""

    def __init__(self, grid, look_ahead=False):
        super().__init__()
        self.cfg = ModelConfig(vocab_size=V, grid=grid)
        self.look_ahead = look_ahead
        self.anchor = nn.Parameter(torch.zeros(1))   # decode() looks for the model's device

    def forward(self, context_tokens, context_pos, target_pos):
        B, (_, h, w) = target_pos.shape[0], self.cfg.grid
        known = torch.full((B, self.cfg.n_positions + h * w), -1, dtype=torch.long)   # one spare frame past the end
        known.scatter_(1, context_pos, context_tokens)                                 # (B, N + hw) -1 = unknown
        later, earlier = known.gather(1, target_pos + h * w), known.gather(1, (target_pos - 2 * h * w).clamp(min=0))
        token = torch.where(self.look_ahead & (later >= 0), (later - 1) % V,
                            torch.where((target_pos >= 2 * h * w) & (earlier >= 0), (earlier + 1) % V, 0))
        return 50.0 * F.one_hot(token, V).float()                                      # (B, Nm, V)


V = 16
SETTINGS = sampling_settings(TrainConfig(sample_steps=4, sample_bootstrap=0, sample_revise=0), 0)


def test_sliding_window_extends_from_the_previous_frames():
    model = NeighbourRule((4, 2, 3))
    tokens = tasks.sliding_window_tokens(model, torch.full((2, 9, 2, 3), -1), SETTINGS, torch.Generator())
    for f in range(4, 9):   # after the first window, every frame was made from the two before it, at the right offset
        assert torch.equal(tokens[:, f], (tokens[:, f - 2] + 1) % V), f"latent frame {f}"
    with pytest.raises(ValueError, match="more than 2 latent frames"):
        tasks.sliding_window_tokens(NeighbourRule((2, 2, 3)), torch.full((1, 8, 2, 3), -1), SETTINGS, None)


def test_sliding_window_interpolates_with_the_known_last_frames():
    model = NeighbourRule((4, 2, 3), look_ahead=True)
    given = torch.full((2, 12, 2, 3), -1)
    given[:, :4], given[:, 10:] = 3, 9                                              # known first and last frames
    tokens = tasks.sliding_window_tokens(model, given, SETTINGS, torch.Generator())
    assert torch.equal(tokens[:, :4], given[:, :4]) and torch.equal(tokens[:, 10:], given[:, 10:])   # kept
    assert (tokens[:, 9] == 8).all()                                                 # made from frame 10: 9 - 1
    assert (tokens[:, 5] == 4).all()                          # from frame 3 (frame 6 is outside its window): 3 + 1


def test_metered_counts_every_call_and_its_flops_per_video():
    model = MeBT(ModelConfig(vocab_size=V, grid=(4, 2, 3), d_model=32, n_heads=2, n_latents=4)).eval()
    metered = tasks.Metered(model)
    split = lambda n: (torch.zeros(2, n, dtype=torch.long), torch.arange(n).expand(2, n),
                       torch.arange(n, 24).expand(2, 24 - n))                       # (context, its positions, targets)
    direct = {}
    for n in (5, 9):
        counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)   # attention on the CPU too
        with counter, torch.no_grad():
            model(*split(n))
        direct[n] = counter.get_total_flops() / 2                                   # per video of the batch of 2
    with torch.no_grad():
        out = metered(*split(5))
        metered(*split(9))
        metered(*split(5))                                                          # a shape seen before: reused
    assert metered.calls == 3 and metered.flops == 2 * direct[5] + direct[9] and direct[5] != direct[9]
    assert torch.equal(out, model(*split(5)))                                       # the model's own answer
    metered.reset()
    assert (metered.calls, metered.flops) == (0, 0.0)


def test_scores_of_ground_truth_videos():
    video, truth = make_synthetic_video(18, frames=128, resolution=32)
    scores = tasks.score_video(video, UNCONDITIONAL)
    assert (scores["persistence"] == 1).all() and (scores["consistency"] == 1).all() and not scores["without_objects"]
    assert scores["histograms"]["count"][len(truth.colours)] == 1
    assert scores["first_count"] == len(truth.colours)
    assert (scores["lost"] == 0).all() and (scores["extra"] == 0).all() and (scores["reshaped"] == 0).all()
    conditional = tasks.score_video(video, PREDICTION, truth)
    assert (conditional["persistence"] == 1).all() and np.nanmax(conditional["trajectory_error"]) < 1e-4
    empty = render(truth.__class__(**{**truth.__dict__, "colours": truth.colours[:0], "shapes": truth.shapes[:0],
                                      "positions": truth.positions[:, :0], "radius": truth.radius[:0]}))
    nothing = tasks.score_video(empty, UNCONDITIONAL)
    assert nothing["without_objects"] and (nothing["persistence"] == 0).all() and (nothing["consistency"] == 0).all()
    assert nothing["first_count"] == 0 and np.isnan(nothing["lost"]).all() and np.isnan(nothing["extra"]).all()
    assert np.isnan(nothing["reshaped"]).all()


def test_summary_weights_persistence_to_the_datas_object_counts():
    # 3 one-object videos kept whole, 1 two-object video kept for half its windows; the data is half and half
    windows = len(UNCONDITIONAL.windows(128))
    half = np.r_[np.ones(windows // 2), np.zeros(windows - windows // 2)]
    scores = [dict(persistence=np.ones(windows), first_count=1) for _ in range(3)]
    scores.append(dict(persistence=half, first_count=2))
    summary = quality.summarize(scores, UNCONDITIONAL, 128, dict(count=[0, 5, 5, 0]))
    assert summary["persistence"]["mean"]["mean"] == pytest.approx((3 + 0.5) / 4)      # the raw mean favours 1 object
    at_data = summary["persistence_at_data_counts"]
    assert at_data["mean"]["mean"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    assert at_data["by_count"] == {"1": dict(videos=3, mean=1.0, low=1.0, high=1.0),
                                   "2": dict(videos=1, mean=0.5, low=0.5, high=0.5)}


def micro_checkpoint(folder) -> str:
    """An untrained MeBT + tokenizer pair of 48-frame, 16 px synthetic clips (3 windows: enough for every task)."""
    cfg = Config(name="micro", data=DataConfig(resolution=16, frames=48, num_videos=8, num_eval_videos=2),
                 tokenizer=TokenizerConfig(channels=8, codebook_size=16, code_dim=8),
                 model=ModelConfig(vocab_size=16, grid=(12, 4, 4), d_model=32, n_heads=2, n_latents=8,
                                   encoder_layers=("cross", "self", "cross"), decoder_layers=("read", "write", "read")),
                 train=TrainConfig(transformer_steps=2, batch_size=2, warmup_steps=1, eval_every=2, sample_steps=2,
                                   sample_bootstrap=2, sample_revise=1)).validate()
    torch.manual_seed(0)
    state = VQTokenizer(cfg.tokenizer).state_dict()
    record = {"path": str(folder / "tokenizer.pt"), "config": cfg.to_dict(), "fingerprint": fingerprint(state)}
    save_checkpoint(folder / "tokenizer.pt", {"kind": "tokenizer", "model": state, "optimizer": {}, "step": 0,
                                              "rng": rng_state(), "config": cfg.to_dict(),
                                              "fingerprint": record["fingerprint"]})
    save_checkpoint(folder / "mebt.pt", {"kind": "mebt", "model": MeBT(cfg.model).state_dict(), "optimizer": {},
                                         "step": 2, "rng": rng_state(), "config": cfg.to_dict(), "tokenizer": record})
    return str(folder / "mebt.pt")


def test_quick_writes_every_task_and_method(tmp_path):
    ckpt, out = micro_checkpoint(tmp_path), tmp_path / "results"
    argv = ["quality", "--ckpt", ckpt, "--quick", "--num-videos", "2", "--batch-size", "2", "--device", "cpu",
            "--out-dir", str(out)]
    bench.main(argv)
    results = json.loads((out / "quality-cpu.json").read_text(), parse_constant=lambda c: pytest.fail(c))  # no NaN
    assert results["num_videos"] == 2 and set(results["tasks"]) == {"unconditional", "prediction", "interpolation"}
    for name, task in results["tasks"].items():
        by_method = {}
        for row in task["runs"]:
            by_method.setdefault(row["method"], []).append(row)
        assert set(by_method) == {"tokenizer (real clips)", "mebt", "sliding-window", "autoregressive"}
        for method, budgets in (("mebt", MEBT_BUDGETS), ("sliding-window", SLIDING_BUDGETS)):
            quick = [b for b, _ in budgets if b in quality.QUICK_BUDGETS]                # the cheaper ones
            assert [r["budget"] for r in by_method[method]] == quick and len(quick) >= 2
            assert len({r["calls"] for r in by_method[method]}) == len(quick)           # each its own budget
        for row in task["runs"][1:]:
            assert row["calls"] > 0 and row["flops"] > 0 and row["seconds"] >= 0
            assert len(row["persistence"]["windows"]) == len(task["windows"])
            assert row["uses_last_frames"] == (row["method"] != "autoregressive" or name != "interpolation")
        made = 12 - (task["given_first_frames"] + task["given_last_frames"]) // 4    # latent frames it generates
        assert by_method["autoregressive"][0]["calls"] == made * 4 * 4                 # one call per token
    assert "diversity_tv" in results["tasks"]["unconditional"]["runs"][1]
    assert "trajectory_error" in results["tasks"]["prediction"]["runs"][1]
    assert (out / "quality-cpu.png").read_bytes()[:4] == b"\x89PNG" and (out / "side-by-side-cpu.gif").exists()
    baseline = results["baselines"]["autoregressive"]["checkpoint"]
    assert baseline.startswith(str(tmp_path / "autoregressive-2steps"))
    assert results["baselines"]["sliding-window"]["steps"] == 2

    # the next run reuses both baselines; a baseline folder with another tokenizer is refused
    _, cfg, payload = load_mebt(ckpt, "cpu")
    fp = payload["tokenizer"]["fingerprint"]
    mtimes = [os.path.getmtime(r["checkpoint"]) for r in results["baselines"].values()]
    for load, (name, record) in zip((baselines_train.sliding_window_model, baselines_train.autoregressive_model),
                                    results["baselines"].items()):
        assert load(ckpt, cfg, fp, 2, torch.device("cpu"))[1:] == (record["checkpoint"], 2)
    assert [os.path.getmtime(r["checkpoint"]) for r in results["baselines"].values()] == mtimes   # not retrained
    other = VQTokenizer(cfg.tokenizer).state_dict()
    save_checkpoint(tmp_path / "sliding-window-2steps" / "tokenizer.pt", {"kind": "tokenizer", "model": other})
    with pytest.raises(ValueError, match="other weights"):
        baselines_train.sliding_window_model(ckpt, cfg, fp, 2, torch.device("cpu"))


def test_methods_and_tasks_subsets_score_only_those_and_train_no_baseline(tmp_path):
    ckpt, out = micro_checkpoint(tmp_path), tmp_path / "results"
    bench.main(["quality", "--ckpt", ckpt, "--quick", "--num-videos", "2", "--batch-size", "2", "--device", "cpu",
                "--methods", "mebt", "--tasks", "unconditional,interpolation", "--out-dir", str(out)])
    results = json.loads((out / "quality-cpu.json").read_text())
    assert results["methods"] == ["mebt"] and results["baselines"] == {}
    assert list(results["tasks"]) == ["unconditional", "interpolation"]
    for task in results["tasks"].values():
        assert {row["method"] for row in task["runs"]} == {"tokenizer (real clips)", "mebt"}
    assert not list(tmp_path.glob("*-2steps"))                          # no baseline folder was made
    assert (out / "quality-cpu.png").exists()
    assert not (out / "side-by-side-cpu.gif").exists()                    # it shows prediction, which did not run


@pytest.mark.parametrize("flag, value, message", [("--num-videos", "0", "expected at least 1"),
                                                  ("--batch-size", "0", "expected at least 1"),
                                                  ("--baseline-steps", "0", "expected at least 1"),
                                                  ("--methods", "mebt,gan", "expected a comma-separated subset"),
                                                  ("--methods", "mebt,mebt", "expected a comma-separated subset"),
                                                  ("--tasks", "prediction,sky", "expected a comma-separated subset"),
                                                  ("--foreground-temperature", "0.0", "expected > 0")])
def test_bad_flags_are_one_line_errors(tmp_path, flag, value, message):
    with pytest.raises(ValueError, match=f"{flag} {value}: {message}") as error:
        bench.main(["quality", "--ckpt", str(tmp_path / "x.pt"), flag, value, "--out-dir", str(tmp_path / "out")])
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()


def test_every_method_samples_with_the_same_foreground_sharpening():
    """One sampling rule for all three methods: a sharpening given to MeBT alone would not be a fair comparison."""
    from types import SimpleNamespace

    from benchmarks.quality import methods
    from mebt.config import get_preset
    cfg = get_preset("tiny")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, sample_foreground_temperature=0.5,
                                                             sample_background_code=22))
    models = {name: SimpleNamespace(cfg=cfg.model) for name in ("mebt", "sliding-window", "autoregressive")}
    runs = methods(cfg, models, 2048, quick=False)
    assert {run["method"] for run in runs} == set(models)
    for run in runs:
        assert (run["settings"]["foreground_temperature"], run["settings"]["background_code"]) == (0.5, 22), run


def test_quality_needs_an_existing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        bench.main(["quality", "--ckpt", str(tmp_path / "missing.pt"), "--device", "cpu", "--out-dir", str(tmp_path)])
