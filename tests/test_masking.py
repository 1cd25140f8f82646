"""Training-time context/target splits: a partition of the positions, sized by the mask ratio."""
import math

import pytest
import torch

from mebt.masking import mask_ratio, num_masked, sample_frame_split, sample_split


def test_split_partitions_each_sample_into_context_and_targets():
    g = torch.Generator().manual_seed(0)
    positions = torch.stack([torch.arange(40) + 100 * b for b in range(3)])   # (3, 40) distinct absolute positions
    for ratio in (None, 0.1, 0.5, 0.9):
        context, targets = sample_split(positions, "uniform", g, ratio=ratio)
        assert context.shape[0] == targets.shape[0] == 3
        assert context.shape[1] + targets.shape[1] == 40
        for b in range(3):
            both = torch.cat([context[b], targets[b]])
            assert both.unique().numel() == 40                            # disjoint
            assert torch.equal(both.sort().values, positions[b])          # union = all positions


def test_target_count_is_ceil_of_ratio_leaving_two_targets_and_two_context_tokens():
    positions = torch.arange(10).expand(2, 10)
    for ratio, expected in [(0.0, 2), (1e-6, 2), (0.3, 3), (0.31, 4), (0.5, 5), (0.75, 8), (0.85, 8), (1.0, 8)]:
        context, targets = sample_split(positions, "cosine", ratio=ratio)
        assert targets.shape == (2, expected), ratio
        assert context.shape == (2, 10 - expected), ratio
    assert num_masked(0.25, 8193) == math.ceil(0.25 * 8193) == 2049
    assert num_masked(1.0, 4) == num_masked(0.0, 4) == 2                  # the smallest split: two of each
    g = torch.Generator().manual_seed(3)                                    # random ratios near 0 and 1 on 8 positions
    sides = [[t.shape[1] for t in sample_split(torch.arange(8)[None], "uniform", g)] for _ in range(300)]
    assert min(min(s) for s in sides) == 2                                 # reached, never crossed


def test_each_sample_gets_its_own_permutation():
    g = torch.Generator().manual_seed(1)
    positions = torch.arange(64).expand(4, 64)
    _, targets = sample_split(positions, "uniform", g, ratio=0.5)
    assert len({tuple(row.sort().values.tolist()) for row in targets}) == 4   # 4 different target sets


def test_uniform_and_cosine_ratio_distributions():
    g = torch.Generator().manual_seed(2)
    uniform = torch.tensor([mask_ratio("uniform", g) for _ in range(20000)])
    cosine = torch.tensor([mask_ratio("cosine", g) for _ in range(20000)])
    for r in (uniform, cosine):
        assert r.min() > 0 and r.max() <= 1
    assert abs(uniform.mean().item() - 0.5) < 0.01
    assert abs(cosine.mean().item() - 2 / math.pi) < 0.01                 # E[cos(pi/2 u)] = 2/pi
    # cosine favours high ratios: P(r > 1/2) = P(u < 2/3) = 2/3 instead of 1/2
    assert abs((uniform > 0.5).float().mean().item() - 0.5) < 0.015
    assert abs((cosine > 0.5).float().mean().item() - 2 / 3) < 0.015


def test_same_seed_same_split_and_different_seed_different_split():
    positions = torch.arange(100).expand(2, 100)
    a = sample_split(positions, "uniform", torch.Generator().manual_seed(7))
    b = sample_split(positions, "uniform", torch.Generator().manual_seed(7))
    c = sample_split(positions, "uniform", torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not (a[0].shape == c[0].shape and torch.equal(a[0], c[0]))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="schedule"):
        mask_ratio("linear")
    with pytest.raises(ValueError, match="schedule"):
        sample_split(torch.arange(4)[None], "linear")
    with pytest.raises(ValueError, match="non-empty"):
        sample_split(torch.zeros(2, 0, dtype=torch.long), "uniform")
    with pytest.raises(ValueError, match="non-empty"):
        sample_split(torch.arange(4), "uniform")
    with pytest.raises(ValueError, match="N >= 4"):
        sample_split(torch.arange(3)[None], "uniform")                      # no room for two of each
    with pytest.raises(ValueError, match="ratio"):
        sample_split(torch.arange(4)[None], "uniform", ratio=1.5)


def test_frame_split_keeps_whole_frames_at_the_start_and_end_and_predicts_the_middle():
    g = torch.Generator().manual_seed(0)
    T, size = 6, 4
    shapes = set()
    for _ in range(400):
        context, targets = sample_frame_split(T, size, g)
        assert torch.equal(torch.cat([context, targets]).sort().values, torch.arange(T * size))   # a partition
        known = sorted(set((context // size).tolist()))                     # context frames
        assert all((context // size == f).sum() == size for f in known)     # whole frames only
        first = next((f for f in range(T) if f not in known), T)            # a = leading known frames
        assert known == list(range(first)) + list(range(T - (len(known) - first), T))   # start block + end block
        assert 1 <= len(known) <= T - 1                                      # something known, something to predict
        shapes.add((first, len(known) - first))
    assert {(a, b) for a, b in shapes if b == 0} == {(a, 0) for a in range(1, T)}          # every prediction shape
    assert any(b > 0 for _, b in shapes) and all(a >= 1 for a, _ in shapes)                # interpolation too
    with pytest.raises(ValueError, match="frame split"):
        sample_frame_split(1, size, g)
