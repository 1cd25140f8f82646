"""Tests for mebt/consistency.py: ground truth scores 100% (and 0 px); removed, recoloured, reshaped, frozen,
teleporting objects fail by the expected amount.

    python -m pytest -q tests/test_consistency.py
"""
from dataclasses import replace

import numpy as np
import pytest
import torch

from mebt.consistency import (Objects, detect_objects, frame_persistence, modal_objects, motion_plausibility,
                              object_consistency, object_histograms, object_persistence, persistence_failures,
                              trajectory_error)
from mebt.data import PALETTE, make_synthetic_video, object_radius, render


def videos(count, resolution=32, min_objects=1, frames=128):
    """Deterministic ground-truth videos with at least `min_objects` objects."""
    seed = 0
    while count:
        video, truth = make_synthetic_video((123, seed), frames=frames, resolution=resolution)
        seed += 1
        if len(truth.colours) >= min_objects:
            count -= 1
            yield video, truth


def isolated(truth, k, t):
    """Object k touches no other object in frame t."""
    gaps = np.abs(truth.positions[t] - truth.positions[t, k]).max(-1)              # (K,) Chebyshev distances
    gaps[k] = np.inf
    return gaps.min() > 2 * truth.radius[k] + 1


def without(truth, k):
    """The same truth with object k left out."""
    keep = [j for j in range(len(truth.colours)) if j != k]
    return replace(truth, positions=truth.positions[:, keep], velocities=truth.velocities[keep],
                   colours=truth.colours[keep], shapes=truth.shapes[keep], radius=truth.radius[keep])


def test_detections_match_truth_for_visible_objects():
    checked = 0
    for video, truth in videos(20):
        found = detect_objects(video)
        assert found.present.shape == (128, len(PALETTE)) and found.centroids.shape == (128, len(PALETTE), 2)
        assert not found.present[:, np.setdiff1d(np.arange(len(PALETTE)), truth.colours)].any()
        for k, colour in enumerate(truth.colours):
            for t in range(0, 128, 4):
                if isolated(truth, k, t):
                    assert found.present[t, colour] and found.shapes[t, colour] == truth.shapes[k]
                    assert np.abs(found.centroids[t, colour] - truth.positions[t, k]).max() < 0.5
                    checked += 1
    assert checked > 300   # 20 videos of 1-2 objects: enough isolated sightings to mean something


def test_ground_truth_scores_100_percent():
    judged = []
    for resolution, count in ((32, 50), (64, 3)):
        for video, truth in videos(count, resolution):
            assert (object_persistence(video, truth) == 1).all()
            assert (object_persistence(video) == 1).all()                         # reference = its own frame 0
            motion = motion_plausibility(video)
            assert np.nanmin(motion) == 1                                         # nan: no move could be judged
            judged.append(np.isfinite(motion).mean())
    assert np.mean(judged) > 0.6   # unjudged only while two objects are close (6.4 px shapes in a 32 px frame: often)


def test_reference_can_be_truth_frame_or_video():
    video, truth = next(videos(1, min_objects=2))
    broken = video.clone()
    broken[:, 64:] = render(without(truth, len(truth.colours) - 1))[:, 64:]
    expected = frame_persistence(broken, truth)
    for reference in (video[:, 0], video, None):
        assert np.array_equal(frame_persistence(broken, reference), expected)


def test_failures_say_whether_an_object_was_lost_or_another_one_drawn():
    video, truth = next(videos(1, min_objects=2))
    broken = video.clone()
    broken[:, 64:] = render(without(truth, len(truth.colours) - 1))[:, 64:]   # the last object gone from frame 64
    lost, extra, reshaped = persistence_failures(broken, truth)
    assert not lost[:64].any() and lost[64:].all() and not extra.any() and not reshaped.any()
    fewer = without(truth, len(truth.colours) - 1)   # judged against one object less: that one is "extra" throughout
    lost, extra, _ = persistence_failures(video, fewer)
    assert extra.all() and lost.mean() < 0.5   # (it may cover a kept object: not excused, it is not a reference)
    assert np.array_equal(frame_persistence(broken, truth), ~persistence_failures(broken, truth)[0])


def test_failures_tell_an_object_in_another_shape_from_a_vanished_one():
    _, truth = next(videos(1))
    one = without(truth, 1) if len(truth.colours) > 1 else truth   # a single object: nothing can cover it
    video = render(one)
    for shape in range(3):
        if shape == one.shapes[0]:
            continue
        broken = video.clone()   # from frame 64 the same object, at the same places, in another shape
        broken[:, 64:] = render(replace(one, shapes=np.array([shape])))[:, 64:]
        lost, extra, reshaped = persistence_failures(broken, one)
        assert not lost[:64].any() and lost[64:].all() and np.array_equal(reshaped, lost) and not extra.any()


@pytest.mark.parametrize("which", ["top", "bottom"])
def test_object_removed_halfway_fails_second_half(which):
    for video, truth in videos(8, min_objects=2):
        k = len(truth.colours) - 1 if which == "top" else 0                       # drawn last (never covered) / first
        broken = video.clone()
        broken[:, 64:] = render(without(truth, k))[:, 64:]
        scores = object_persistence(broken, truth)                                # (8,) windows of 16 frames
        assert (scores[4:] == 0).all()
        assert scores.mean() == pytest.approx(0.5, abs=0.05)                      # ~50%: only the first half passes
        assert (scores[:4] == 1).all() or which == "bottom"                       # it may be hidden just before


def test_recoloured_object_halfway_fails_second_half():
    for video, truth in videos(8):
        k = len(truth.colours) - 1
        unused = np.setdiff1d(np.arange(len(PALETTE)), truth.colours)[0]
        recoloured = replace(truth, colours=np.where(np.arange(len(truth.colours)) == k, unused, truth.colours))
        broken = video.clone()
        broken[:, 64:] = render(recoloured)[:, 64:]
        assert object_persistence(broken, truth).tolist() == [1.0] * 4 + [0.0] * 4


def test_reshaped_object_fails_when_it_stands_alone():
    video, truth = next(v for v in videos(30, min_objects=1) if len(v[1].colours) == 1)
    reshaped = replace(truth, shapes=(truth.shapes + 1) % 3)
    broken = video.clone()
    broken[:, 64:] = render(reshaped)[:, 64:]
    assert object_persistence(broken, truth).tolist() == [1.0] * 4 + [0.0] * 4


def test_teleporting_object_lowers_motion_plausibility():
    video, truth = next(v for v in videos(30) if len(v[1].colours) == 1)          # alone: every move is judged
    r = object_radius(32)
    jumped = truth.positions.copy()
    for t in (20, 52, 84, 116):                                                   # teleport in 4 of 8 windows
        jumped[t:, 0] = np.clip(32 - jumped[t:, 0], r, 32 - r)                    # mirror through the centre
    broken = render(replace(truth, positions=jumped))
    motion = motion_plausibility(broken)
    assert (motion[[0, 2, 4, 6]] == 1).all()
    assert (motion[[1, 3, 5, 7]] < 1).all() and np.nanmean(motion) < 1
    assert (object_persistence(broken, truth) == 1).all()                        # still there: only motion fails


def test_extra_object_fails_and_bad_input_is_an_error():
    video, truth = next(videos(1))
    unused = np.setdiff1d(np.arange(len(PALETTE)), truth.colours)[0]
    crowded = video.clone()
    crowded[:, 40:, :8, :8] = torch.from_numpy(PALETTE[unused] / 127.5 - 1).float()[:, None, None, None]
    assert frame_persistence(crowded, truth)[:40].all() and not frame_persistence(crowded, truth)[40:].any()
    with pytest.raises(ValueError, match="expected \\(3, T, H, H\\)"):
        detect_objects(video[0])
    assert object_persistence(video[:, :40], truth).shape == (3,)                 # windows of 16, 16, 8 frames


# ---------------------------------------------------------------- reference-free consistency, trajectories, diversity

def single_object_videos(count):
    """Ground-truth videos of one object (every frame is judged: nothing can cover it)."""
    return [v for v in videos(6 * count) if len(v[1].colours) == 1][:count]


def test_new_metrics_are_perfect_on_ground_truth():
    judged = []
    for resolution, count in ((32, 50), (64, 3)):
        for video, truth in videos(count, resolution):
            found = detect_objects(video)
            modal = modal_objects(video, found)
            assert sorted(zip(modal.colours, modal.shapes)) == sorted(zip(truth.colours, truth.shapes))
            assert (object_consistency(video, found) == 1).all()
            error, missed = trajectory_error(video, truth, found)
            assert np.nanmax(error) < 1e-4 and np.nanmax(missed) == 0                  # nan: nothing judged there
            judged.append(np.isfinite(missed).mean())
    assert np.mean(judged) > 0.7   # windows where some object stands alone, unoverlapped


def test_recoloured_object_late_drops_consistency_by_its_share_of_frames():
    """Recoloured for the last 16 frames: below MODAL_SHARE, so the modal set keeps the original colour."""
    checked = 0
    for video, truth in videos(8):
        k = len(truth.colours) - 1                                                  # drawn last: never covered
        unused = np.setdiff1d(np.arange(len(PALETTE)), truth.colours)[0]
        recoloured = replace(truth, colours=np.where(np.arange(len(truth.colours)) == k, unused, truth.colours))
        broken = video.clone()
        broken[:, 112:] = render(recoloured)[:, 112:]                               # the last eighth
        assert object_consistency(broken).tolist() == [1.0] * 7 + [0.0]            # modal = the original objects
        _, missed = trajectory_error(broken, truth)                                 # nan: every object overlapped
        assert not (missed[:7] > 0).any() and not (missed[7:] == 0).any()           # its sightings are missed
        checked += np.isfinite(missed[7:]).sum()
        halfway = video.clone()
        halfway[:, 64:] = render(recoloured)[:, 64:]                                # no majority colour: no frame
        assert (object_consistency(halfway) == 0).all()                             # holds the modal set
    assert checked >= 4


@pytest.mark.parametrize("change", ["frozen", "teleported"])
def test_frozen_or_teleported_object_has_the_expected_trajectory_error(change):
    r = object_radius(32)
    for video, truth in single_object_videos(4):
        moved = truth.positions.copy()
        if change == "frozen":
            moved[64:] = moved[64]                                                  # stops halfway
        else:
            moved[64:] = np.clip(32 - moved[64:], r, 32 - r)                        # mirrored through the centre
        broken = render(replace(truth, positions=moved))
        error, missed = trajectory_error(broken, truth)
        distance = np.linalg.norm(moved[:, 0] - truth.positions[:, 0], axis=-1)      # (T,) true offsets
        expected = distance.reshape(8, 16).mean(1)
        np.testing.assert_allclose(error, expected, atol=0.5)                       # rasterisation: < 0.5 px
        assert (error[:4] < 1e-4).all() and (missed == 0).all()                     # still seen, as itself
        assert (object_consistency(broken) == 1).all()                              # the same object throughout


def test_object_histograms_count_colours_and_shapes():
    hist = object_histograms(Objects(np.array([4, 1]), np.array([2, 2])))
    assert hist["count"].tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert hist["colour"].tolist() == [0, 1, 0, 0, 1, 0] and hist["shape"].tolist() == [0, 0, 2]
    assert object_histograms(Objects(np.array([], int), np.array([], int)))["count"][0] == 1   # no object
