"""bench.py reachability: the sparse patterns reach what their definitions say, and the measured MeBT influence
shows every context token reaching every target in one cross + one read layer, other targets only via writes.

    python -m pytest -q tests/test_reachability.py
"""
import json
import types

import torch

from benchmarks import reachability

GRID = (32, 8, 8)


def test_patterns_attend_to_what_they_promise():
    t, h, w = GRID
    full, axial = reachability.neighbours("full", GRID), reachability.neighbours("axial", GRID)
    assert full.all()
    assert (axial.sum(1) == t + h + w - 2).all()                    # three lines through the query, itself once
    windowed = reachability.neighbours("windowed", GRID)
    centre = ((t // 2) * h + h // 2) * w + w // 2
    assert windowed[centre].sum() == (2 * reachability.WINDOW_RADIUS + 1) ** 3   # a whole box away from the walls
    assert windowed[0].sum() == (reachability.WINDOW_RADIUS + 1) ** 3            # a corner: one octant of it
    for pattern in reachability.PATTERNS:
        keys = reachability.neighbours(pattern, GRID)
        assert torch.equal(keys, keys.T), pattern                   # every pattern here is symmetric
        assert keys.diagonal().all(), pattern                       # and includes the query itself


def test_reach_grows_hop_by_hop():
    axial = reachability.neighbours("axial", GRID)
    # two axis moves: the tokens that differ from the corner in at most two of (t, h, w), i.e. the three planes
    # through it, by inclusion-exclusion: planes (t,h), (t,w), (h,w), minus their pairwise lines t, h, w, plus it
    assert reachability.reach(axial, 0, 2) == [46, 32 * 8 + 32 * 8 + 8 * 8 - 32 - 8 - 8 + 1]
    assert reachability.layers_to_reach_all(axial, 0) == 3
    # windowed: +-2 latent frames per layer, so the corner reaches the last latent frame (31 away) in 16 layers
    assert reachability.layers_to_reach_all(reachability.neighbours("windowed", GRID), 0) == 16
    for pattern in reachability.PATTERNS:
        counts = reachability.reach(reachability.neighbours(pattern, GRID), 5, 4)
        assert counts == sorted(counts) and counts[-1] <= 32 * 8 * 8


def test_mebt_targets_see_all_context_and_other_targets_only_through_write_layers():
    read_write = reachability.mebt_influence(("read", "write", "read"), (4, 8, 8))
    read_only = reachability.mebt_influence(("read", "read"), (4, 8, 8))
    for m in (read_write, read_only):
        assert m["context_tokens"] == 128 and m["context_influencing"] == 128
    assert read_write["other_targets_influencing"] == read_write["other_targets"] == 127
    assert read_only["other_targets_influencing"] == 0


def test_run_writes_json_and_plot(tmp_path):
    reachability.run_reachability(types.SimpleNamespace(out_dir=str(tmp_path)), torch.device("cpu"))
    results = json.loads((tmp_path / "reachability-cpu.json").read_text())
    assert (tmp_path / "reachability-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["patterns"]["full"]["reach_from_corner"] == [2048, 2048]
    assert results["mebt"]["read_write"]["context_influencing"] == results["mebt"]["read_write"]["context_tokens"]
