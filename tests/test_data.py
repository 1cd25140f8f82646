"""Tests for mebt/data.py: synthetic videos agree with their ground truth; frame folders read in every layout.

    python -m pytest -q tests/test_data.py
"""

import numpy as np
import pytest
import torch
from PIL import Image

from mebt.config import DataConfig
from mebt.data import (PALETTE, SHAPES, FrameFolderVideos, SyntheticVideos, background, build_dataset,
                       coverage, make_synthetic_video, max_speed, object_radius, render, shape_mask)

# ---------------------------------------------------------------------------------------------- synthetic


def test_same_seed_same_video_different_seed_different():
    a, truth_a = make_synthetic_video(7, frames=32, resolution=32)
    b, truth_b = make_synthetic_video(7, frames=32, resolution=32)
    c, _ = make_synthetic_video(8, frames=32, resolution=32)
    assert torch.equal(a, b) and np.array_equal(truth_a.positions, truth_b.positions)
    assert not torch.equal(a, c)


def test_shapes_dtype_range_and_configurable_size():
    for frames, res in [(128, 32), (20, 64)]:
        video, truth = make_synthetic_video(3, frames=frames, resolution=res)
        assert video.shape == (3, frames, res, res) and video.dtype == torch.float32
        assert video.min() >= -1 and video.max() <= 1
        assert truth.positions.shape == (frames, len(truth.colours), 2)
        assert np.allclose(truth.radius, 0.20 * res)
        assert torch.equal(render(truth), video)                      # render(truth) reproduces the pixels


def test_object_counts_colours_and_shapes():
    counts, shapes = set(), set()
    for seed in range(200):
        _, truth = make_synthetic_video(seed, frames=4, resolution=32, max_objects=3)
        k = len(truth.colours)
        assert 1 <= k <= 3 and len(set(truth.colours.tolist())) == k   # distinct palette colours
        counts.add(k)
        shapes.update(truth.shapes.tolist())
    assert counts == {1, 2, 3} and shapes == set(range(len(SHAPES)))


def test_palette_is_far_from_background_and_itself():
    colours = PALETTE.astype(float)
    pairwise = np.linalg.norm(colours[:, None] - colours[None], axis=-1) + np.eye(len(colours)) * 1e9
    assert pairwise.min() > 150
    scenery = background(32).reshape(-1, 3)
    assert np.linalg.norm(colours[:, None] - scenery[None], axis=-1).min() > 120


def test_ground_truth_matches_pixels():
    checked = 0
    for seed in range(30):
        video, truth = make_synthetic_video(seed, frames=128, resolution=32)
        pixels = ((video.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round()   # (T, H, W, 3)
        for k in range(len(truth.colours)):
            mask = shape_mask(truth.positions[:, k], int(truth.shapes[k]), float(truth.radius[k]), 32)   # (T, H, W)
            for t in range(0, 128, 8):
                y, x = truth.positions[t, k].astype(int)                   # the pixel holding the centre
                later = [coverage(truth.positions[t:t + 1, j], int(truth.shapes[j]), float(truth.radius[j]), 32)[0, y, x]
                         for j in range(k + 1, len(truth.colours))]
                if any(later):
                    continue                                               # (partly) covered by an object drawn later
                assert mask[t, y, x]
                assert np.array_equal(pixels[t, y, x], PALETTE[truth.colours[k]])
                checked += 1
    assert checked > 500


def test_edges_are_anti_aliased_by_the_covered_fraction_of_each_pixel():
    # a square from y, x = 8.25 to 15.75 covers pixel rows/columns 9..14 fully and three quarters of rows/columns 8 and 15
    cover = coverage(np.array([[12.0, 12.0]], dtype=np.float32), SHAPES.index("square"), 3.75, 32)[0]   # (H, W)
    assert np.allclose(cover[9:15, 9:15], 1) and np.allclose(cover[8, 9:15], 0.75) and np.allclose(cover[8, 8], 0.5625)
    assert cover.sum() == pytest.approx(7.5 ** 2) and cover[:8].sum() == 0 and cover[16:].sum() == 0
    for shape, area in (("circle", np.pi), ("diamond", 2.0)):                       # areas r^2 * (pi, 2)
        total = coverage(np.array([[15.3, 16.1]], dtype=np.float32), SHAPES.index(shape), 6.4, 32).sum()
        assert total == pytest.approx(area * 6.4 ** 2, rel=0.02)
    video, truth = make_synthetic_video(3, frames=32, resolution=32)
    assert torch.equal(render(truth, 8, 16), video[:, 8:24])                       # a window renders alone


def test_background_is_the_same_for_every_video():
    a, _ = make_synthetic_video(1, frames=16, resolution=32)
    b, _ = make_synthetic_video(2, frames=16, resolution=32)
    expected = torch.from_numpy(background(32) / 127.5 - 1).permute(2, 0, 1)   # (3, H, W)
    for video in (a, b):
        plain = (video == expected[:, None]).all(0)                    # (T, H, W) pixels showing background
        assert plain.float().mean() > 0.5                              # most of the frame is background


def test_objects_stay_in_frame_and_bounces_keep_speed():
    bounces = 0
    for seed in range(50):
        _, truth = make_synthetic_video(seed, frames=128, resolution=32)
        r = object_radius(32)
        low, high = r, 32 - r                                           # the centre range that keeps the shape inside
        assert (truth.positions >= low - 1e-4).all() and (truth.positions <= high + 1e-4).all()
        speed = np.linalg.norm(truth.velocities, axis=-1)               # (K,)
        assert (speed >= 0.3 - 1e-6).all() and (speed <= max_speed(32) + 1e-6).all()
        # an independent step-by-step simulation of elastic bounces must give the same path
        position, velocity = truth.positions[0].astype(np.float64), truth.velocities.astype(np.float64)
        for t in range(1, 128):
            position = position + velocity
            hit_low, hit_high = position < low, position > high
            position = np.where(hit_low, 2 * low - position, np.where(hit_high, 2 * high - position, position))
            velocity = np.where(hit_low | hit_high, -velocity, velocity)   # flips direction, keeps the speed
            bounces += int((hit_low | hit_high).sum())
            assert np.allclose(truth.positions[t], position, atol=1e-3)
        assert np.allclose(np.linalg.norm(velocity, axis=-1), speed)
    assert bounces > 50


def test_dataset_is_indexed_by_seed_and_index():
    data = SyntheticVideos(num_videos=5, frames=16, resolution=32, seed=4)
    video, truth = make_synthetic_video((4, 3), frames=16, resolution=32)
    assert torch.equal(data[3], video) and np.array_equal(data.truth(3).positions, truth.positions)
    assert data.clip_starts() == [(i, 0) for i in range(5)] and torch.equal(data.clip(3, 0), video)
    with pytest.raises(IndexError):
        data[5]


def test_build_dataset_splits_use_different_seeds():
    cfg = DataConfig(frames=16, num_videos=10, num_eval_videos=3)
    train, held_out = build_dataset(cfg, "train"), build_dataset(cfg, "eval")
    assert len(train) == 10 and len(held_out) == 3
    assert all(not torch.equal(train[i], held_out[i]) for i in range(3))
    with pytest.raises(ValueError, match="split"):
        build_dataset(cfg, "valid")
    with pytest.raises(ValueError, match="data_dir"):
        build_dataset(DataConfig(dataset="skytimelapse"), "train")


def test_object_counts_are_uniform():
    data = SyntheticVideos(2000, frames=128, resolution=32)
    counts = np.bincount([len(data.truth(i).colours) for i in range(len(data))], minlength=3)
    assert counts[0] == 0 and (np.abs(counts[1:] / 2000 - 1 / 2) < 0.04).all()   # 1..2 objects, equally likely

# ---------------------------------------------------------------------------------------------- frame folders


def write_frame(path, number, size=(12, 12)):
    """A solid frame whose red channel encodes its number (10 * number), so tests can read the order back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10 * number, 128, 60)).save(path)


def numbers(clip):
    """Frame numbers of a (3, T, H, W) clip written by write_frame (JPEG error is a few levels, far below 10)."""
    red = (clip[0].mean((1, 2)) + 1) * 127.5                             # (T,)
    return [round(v / 10) for v in red.tolist()]


def test_two_level_layout_numeric_order_gaps_and_short_videos(tmp_path, capsys):
    root = tmp_path / "sky_train"
    for n in range(5, 13):                                               # 5..12: "_9" sorts after "_10" as text
        write_frame(root / "vidA" / "vidA_1" / f"vidA_frames_{n}.jpg", n)
    for n in list(range(1, 6)) + list(range(8, 14)):                     # a gap after 5: two videos
        write_frame(root / "vidB" / "vidB_2" / f"vidB_frames_{n:08d}.jpeg", n)
    for n in range(1, 3):                                                # too short for a 4-frame window
        write_frame(root / "vidC" / "vidC_1" / f"vidC_frames_{n:08d}.jpg", n)
    data = FrameFolderVideos(root, frames=4, resolution=8)
    assert "skipped 1 of 4 videos" in capsys.readouterr().out
    assert [len(v) for v in data.videos] == [8, 5, 6]
    assert numbers(data.clip(0, 0)) == [5, 6, 7, 8] and numbers(data.clip(0, 4)) == [9, 10, 11, 12]
    assert numbers(data.clip(2, 2)) == [10, 11, 12, 13]
    assert data.clip_starts() == [(0, 0), (0, 4), (1, 0), (2, 0)]
    clip = data[1]
    assert clip.shape == (3, 4, 8, 8) and clip.dtype == torch.float32 and -1 <= clip.min() <= clip.max() <= 1
    torch.manual_seed(0)
    windows = {tuple(numbers(data[0])) for _ in range(30)}               # random contiguous windows
    assert windows <= {tuple(range(s, s + 4)) for s in range(5, 10)} and len(windows) > 1
    # the folder above sky_train works too; without sky_test/test.txt, eval falls back to train with a warning
    above = FrameFolderVideos(tmp_path, frames=4, resolution=8)
    held_out = FrameFolderVideos(tmp_path, frames=4, resolution=8, split="eval")
    assert above.source == held_out.source == root and above.videos == held_out.videos == data.videos
    assert "no held-out split" in capsys.readouterr().out


def test_flat_layout_png_with_stride(tmp_path):
    for n in range(1, 11):
        write_frame(tmp_path / "clip" / f"frame{n}.png", n)
    data = FrameFolderVideos(tmp_path, frames=3, resolution=8, stride=2)
    assert numbers(data.clip(0, 1)) == [2, 4, 6]
    assert data.clip_starts() == [(0, 0)]                                # a window spans 3 * 2 = 6 source frames
    assert torch.allclose(data.clip(0, 0)[1], torch.tensor(128 / 127.5 - 1), atol=1e-6)   # PNG: lossless


def test_list_layout_and_eval_split(tmp_path):
    lines = []
    for video in ("sky_test/abc/abc_1/abc_1_frames", "sky_test/xyz/xyz_frames"):
        for n in (10, 9, 8, 11, 12, 13, 20, 21):                         # listed out of order; gap after 13
            write_frame(tmp_path / f"{video}_{n}.jpg", n)
            lines.append(f"{video}_{n}.jpg")
    (tmp_path / "test.txt").write_text("\n".join(lines) + "\n")
    data = build_dataset(DataConfig(dataset="skytimelapse", frames=4, resolution=8), "eval", str(tmp_path))
    assert data.source == tmp_path / "test.txt"
    assert [len(v) for v in data.videos] == [6, 6]                       # the 2-frame runs after the gap are skipped
    assert numbers(data.clip(1, 0)) == [8, 9, 10, 11]


def test_non_square_frames_are_centre_cropped(tmp_path):
    for name, size in (("wide", (30, 20)), ("tall", (20, 30))):
        (tmp_path / name).mkdir()
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[...] = (0, 0, 255)                                         # blue border, cropped away ...
        y0, x0 = (size[1] - 20) // 2, (size[0] - 20) // 2
        image[y0:y0 + 20, x0:x0 + 20] = (0, 255, 0)                      # ... green centre square kept
        for n in range(2):
            Image.fromarray(image).save(tmp_path / name / f"f_{n}.png")
    data = FrameFolderVideos(tmp_path, frames=2, resolution=10)
    for i in range(2):
        clip = data.clip(i, 0)
        assert torch.allclose(clip[1], torch.ones_like(clip[1])) and (clip[[0, 2]] == -1).all()


def test_corrupt_frame_is_an_error_naming_the_file(tmp_path):
    for n in range(4):
        write_frame(tmp_path / "v" / f"f_{n}.jpg", n)
    (tmp_path / "v" / "f_2.jpg").write_bytes(b"not a jpeg at all")
    data = FrameFolderVideos(tmp_path, frames=2, resolution=8)
    assert numbers(data.clip(0, 0)) == [0, 1]                            # windows without it read fine
    with pytest.raises(ValueError, match="f_2.jpg"):
        data.clip(0, 2)


def test_missing_empty_and_unusable_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.*sky_train"):
        FrameFolderVideos(tmp_path / "nowhere", frames=4, resolution=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty.*train.txt"):
        FrameFolderVideos(tmp_path / "empty", frames=4, resolution=8)
    write_frame(tmp_path / "short" / "v" / "f_1.png", 1)
    with pytest.raises(ValueError, match="short.*4 frames"):
        FrameFolderVideos(tmp_path / "short", frames=4, resolution=8)
