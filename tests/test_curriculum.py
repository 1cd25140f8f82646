"""The length curriculum: p(T | step) and the absolute positions of the windows it cuts."""
import pytest
import torch

from mebt.curriculum import Curriculum


def test_probs_sum_to_one_and_stay_finite_at_any_step():
    cur = Curriculum(t_max=32, steps_per_frame=100)
    for step in (0, 1, 50, 777, 3100, 10_000, 10**9, 10**12):
        p = cur.probs(step)
        assert p.shape == (32,) and p.dtype == torch.float32
        assert torch.isfinite(p).all() and (p >= 0).all()
        assert abs(p.sum().item() - 1) < 1e-5


def test_mode_follows_step_over_b_plus_one():
    b = 100
    cur = Curriculum(t_max=16, steps_per_frame=b)
    for step in [0, 30, 149, 151, 420, 1010, 1499, 2000, 50_000]:   # away from the ties at (j + 1/2) * b
        expected = min(max(round(step / b) + 1, 1), 16)
        assert int(cur.probs(step).argmax()) + 1 == expected, step


def test_first_steps_draw_short_windows():
    cur = Curriculum.from_total_steps(t_max=32, total_steps=10_000)
    p = cur.probs(0)
    # with spread c = 2: p(T) ∝ exp(-(T-1)^2 / 8), so T <= 3 has ~83% of the mass and T <= 6 over 99%
    assert p[:3].sum() > 0.8 and p[:6].sum() > 0.99
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([cur.sample_length(0, g) for _ in range(2000)])
    assert lengths.min() >= 1 and (lengths <= 3).float().mean() > 0.78
    assert abs(lengths.float().mean().item() - (torch.arange(1, 33) * p).sum().item()) < 0.1


def test_full_length_reached_at_full_at_and_drawn_at_the_end():
    cur = Curriculum.from_total_steps(t_max=32, total_steps=10_000, full_at=0.65)
    assert cur.steps_per_frame == pytest.approx(6500 / 31)
    assert int(cur.probs(6500).argmax()) + 1 == 32
    assert int(cur.probs(6000).argmax()) + 1 < 32
    g = torch.Generator().manual_seed(1)
    lengths = [cur.sample_length(10_000, g) for _ in range(500)]
    assert sum(t == 32 for t in lengths) / 500 > 0.95


def test_from_total_steps_edge_cases():
    one = Curriculum.from_total_steps(t_max=1, total_steps=100)
    assert one.sample_length(0) == 1 and one.probs(5).tolist() == [1.0]
    assert Curriculum.from_total_steps(t_max=32, total_steps=3).steps_per_frame == 1.0   # b is at least 1


def test_windows_hold_exact_absolute_positions_of_their_frames():
    t, h, w = 6, 3, 4
    cur = Curriculum(t_max=6, steps_per_frame=10)
    g = torch.Generator().manual_seed(2)
    ti, hi, wi = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    flat = (ti * h + hi) * w + wi                                      # (t, h, w) the contract's flat position
    starts = set()
    for step in (0, 20, 40):
        positions = cur.sample_window(step, 16, (t, h, w), g)
        T = positions.shape[1] // (h * w)
        assert positions.dtype == torch.long and positions.shape == (16, T * h * w)
        assert positions.min() >= 0 and positions.max() < t * h * w
        for row in positions:
            start = int(row[0]) // (h * w)
            starts.add(start)
            assert torch.equal(row, flat[start:start + T].reshape(-1))  # frames start..start+T-1, raster order
    assert len(starts) > 1                                              # random start per sample


def test_window_of_a_longer_clip_and_disabled_curriculum():
    cur = Curriculum(t_max=4, steps_per_frame=10)
    g = torch.Generator().manual_seed(3)
    positions = cur.sample_window(10**6, 8, (10, 2, 2), g)             # late: T = t_max = 4 of a 10-frame clip
    assert positions.shape == (8, 16) and positions.max() < 40
    off = Curriculum(t_max=5, steps_per_frame=10, enabled=False)
    assert off.sample_length(0) == 5 and off.probs(0).tolist() == [0, 0, 0, 0, 1]
    full = off.sample_window(0, 3, (5, 2, 3), g)
    assert torch.equal(full, torch.arange(30).expand(3, 30))


def test_same_seed_same_window():
    cur = Curriculum(t_max=8, steps_per_frame=5)
    a = cur.sample_window(17, 4, (8, 2, 2), torch.Generator().manual_seed(9))
    b = cur.sample_window(17, 4, (8, 2, 2), torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="t_max"):
        Curriculum(t_max=0, steps_per_frame=1)
    with pytest.raises(ValueError, match="steps_per_frame"):
        Curriculum(t_max=4, steps_per_frame=0)
    with pytest.raises(ValueError, match="spread"):
        Curriculum(t_max=4, steps_per_frame=1, spread=0)
    with pytest.raises(ValueError, match="full_at"):
        Curriculum.from_total_steps(t_max=4, total_steps=100, full_at=0)
    with pytest.raises(ValueError, match="total_steps"):
        Curriculum.from_total_steps(t_max=4, total_steps=0)
    with pytest.raises(ValueError, match="t_max"):
        Curriculum(t_max=8, steps_per_frame=1).sample_window(0, 2, (4, 2, 2))
