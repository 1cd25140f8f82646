"""Video files: GIF/MP4 grids, PNG filmstrips, frame folders, uint8 conversion and clear errors."""
import os

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from mebt import video_io
from mebt.video_io import make_grid, read_video, save_filmstrip, save_video, to_uint8

COLOURS = np.array([[20, 30, 200], [230, 40, 40], [40, 220, 60], [250, 250, 20]], np.uint8)


def _moving_videos(batch=3, frames=5, size=8):
    """(B, 3, T, H, W) in [-1, 1] built from a few flat colours (GIF palettes keep them exact);
    a 2x2 block moves one pixel per frame, so no two consecutive frames are equal."""
    pixels = np.zeros((batch, frames, size, size, 3), np.uint8)
    for b in range(batch):
        pixels[b] = COLOURS[b % 3]                                   # per-sample background
        for t in range(frames):
            pixels[b, t, 2:4, t:t + 2] = COLOURS[3]                  # the moving block
    return torch.from_numpy(pixels).permute(0, 4, 1, 2, 3).float() / 127.5 - 1, pixels


def test_to_uint8_maps_range_and_layout():
    video = torch.tensor([-1.0, 0.0, 1.0, 5.0, -7.0]).reshape(1, 1, 1, 5).expand(3, 2, 1, 5)   # (3, T=2, H=1, W=5)
    frames = to_uint8(video)
    assert frames.dtype == np.uint8 and frames.shape == (2, 1, 5, 3)
    assert frames[0, 0, :, 0].tolist() == [0, 128, 255, 255, 0]     # ends map exactly; out-of-range values clamp
    assert to_uint8(video.unsqueeze(0).repeat(4, 1, 1, 1, 1)).shape == (4, 2, 1, 5, 3)
    with pytest.raises(ValueError, match=r"to_uint8: expected a video .* got shape \(4, 2, 1, 5\)"):
        to_uint8(torch.zeros(4, 2, 1, 5))


def test_make_grid_layout_and_borders():
    videos, pixels = _moving_videos(batch=3, frames=5, size=8)
    grid = make_grid(videos, nrow=2, scale=3)                        # 2 columns, 2 rows, 24 px cells
    assert grid.shape == (5, 2 * (24 + 2) + 2, 2 * (24 + 2) + 2, 3)
    up = pixels.repeat(3, axis=2).repeat(3, axis=3)                  # nearest-neighbour upscaling
    assert np.array_equal(grid[:, 2:26, 2:26], up[0]) and np.array_equal(grid[:, 2:26, 28:52], up[1])
    assert np.array_equal(grid[:, 28:52, 2:26], up[2])
    assert (grid[:, :2] == 255).all() and (grid[:, :, 26:28] == 255).all()   # white borders
    assert (grid[:, 28:52, 28:52] == 255).all()                      # the unused fourth cell stays blank
    assert make_grid(videos).shape == (5, 2 * 10 + 2, 2 * 10 + 2, 3)  # default nrow = ceil(sqrt(3)) = 2


def test_gif_round_trip(tmp_path):
    videos, pixels = _moving_videos(batch=3, frames=5, size=8)
    path = tmp_path / "samples.gif"
    save_video(path, videos, fps=8, nrow=3, scale=2)
    frames = iio.imread(path, index=None, mode="RGB")
    assert frames.shape == (5, 16 + 4, 3 * (16 + 2) + 2, 3)
    assert np.array_equal(frames, make_grid(videos, nrow=3, scale=2))   # a handful of colours: the palette is exact
    meta = iio.immeta(path)
    assert meta["loop"] == 0 and abs(meta["duration"] - 125) <= 10     # loops forever at ~8 fps (GIF: 10 ms steps)
    back = read_video(path)                                           # our reader agrees, as (3, T, H, W) in [-1, 1]
    assert back.shape == (3, 5, 20, 56) and torch.allclose(back[:, :, 2:18:2, 2:18:2], videos[0], atol=1e-6)
    assert os.listdir(tmp_path) == ["samples.gif"]                   # the temporary file was renamed away


def test_default_scale_makes_frames_at_least_128px(tmp_path):
    videos = torch.rand(1, 3, 2, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    save_video(tmp_path / "one.gif", videos)
    assert iio.imread(tmp_path / "one.gif", index=None).shape[1:3] == (128 + 4, 128 + 4)


def test_mp4_round_trip_or_clear_error(tmp_path):
    videos, pixels = _moving_videos(batch=2, frames=6, size=8)
    path = tmp_path / "samples.mp4"
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:                                              # without the plugin: the install hint, and no file
        with pytest.raises(ModuleNotFoundError, match="pip install imageio-ffmpeg"):
            save_video(path, videos)
        assert not path.exists()
        return
    save_video(path, videos, nrow=2, scale=4)                        # 2 * (32 + 2) + 2 = 70 wide, 36 high: even
    back = read_video(path)
    assert back.shape == (3, 6, 36, 70)
    cell = back[:, :, 2:34, 2:34]                                    # first sample, upscaled 4x
    expected = videos[0].repeat_interleave(4, -1).repeat_interleave(4, -2)
    assert (cell - expected).abs().mean() < 0.05                     # H.264 is lossy: close on average


def test_mp4_without_plugin_says_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "imageio_ffmpeg", None)   # makes `import imageio_ffmpeg` fail
    videos, _ = _moving_videos()
    with pytest.raises(ModuleNotFoundError, match=r"samples\.mp4: \.mp4 needs .*pip install imageio-ffmpeg \(or use \.gif\)"):
        save_video(tmp_path / "samples.mp4", videos)
    # reading: one line (a ValueError, as every unreadable input) naming the file, the fix and what still reads
    with pytest.raises(ValueError, match=r"^\S*in\.mp4: reading \.mp4 needs the imageio-ffmpeg package "
                                         r"\(pip install imageio-ffmpeg\); without it we read \.gif files and folders"):
        read_video(_touch(tmp_path / "in.mp4"))
    gif = tmp_path / "in.gif"                                        # GIFs need no ffmpeg
    iio.imwrite(gif, to_uint8(videos[0]), duration=100, loop=0)
    assert read_video(gif).shape == videos[0].shape


def _touch(path):
    path.write_bytes(b"")
    return path


def test_filmstrip_png_rows_are_samples_columns_are_frames(tmp_path):
    videos, pixels = _moving_videos(batch=2, frames=10, size=8)
    path = tmp_path / "strip.png"
    save_filmstrip(path, videos, every=3, scale=1)                   # frames 0, 3, 6, 9 -> 4 columns
    strip = iio.imread(path)
    assert strip.shape == (2 * (8 + 2) + 2, 4 * (8 + 2) + 2, 3)
    row, col = 1, 2                                                  # sample 1, frame 6
    y, x = 2 + row * 10, 2 + col * 10
    assert np.array_equal(strip[y:y + 8, x:x + 8], pixels[1, 6])
    save_filmstrip(path, videos[0], every=5)                         # one video; default scale -> 128 px cells
    assert iio.imread(path).shape == (128 + 4, 2 * (128 + 2) + 2, 3)


def test_folder_frames_read_in_numeric_order(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for k in range(1, 13):                                           # frame_1 .. frame_12, value 20 * k
        Image.fromarray(np.full((6, 6, 3), 20 * k, np.uint8)).save(folder / f"frame_{k}.png")
    (folder / "notes.txt").write_text("not a frame")
    video = read_video(folder)
    assert video.shape == (3, 12, 6, 6) and video.dtype == torch.float32
    values = to_uint8(video)[:, 0, 0, 0].tolist()
    assert values == [20 * k for k in range(1, 13)]                  # frame_9 before frame_10 (not lexicographic)
    assert read_video(folder, frames=4).shape[1] == 4                # the first frames only
    with pytest.raises(ValueError, match=r"clip has 12 frames, expected at least 16$"):
        read_video(folder, frames=16)


def test_resolution_centre_crops_to_square(tmp_path):
    folder = tmp_path / "wide"
    folder.mkdir()
    frame = np.zeros((12, 20, 3), np.uint8)
    frame[:] = (255, 0, 0)                                           # red margins, cropped away ...
    frame[:, 4:16] = (0, 0, 255)                                     # ... around a blue 12 x 12 centre
    for k in range(3):
        Image.fromarray(frame).save(folder / f"{k:05d}.png")
    video = read_video(folder, resolution=6)
    assert video.shape == (3, 3, 6, 6)
    assert torch.allclose(video[:, 0], torch.tensor([-1.0, -1.0, 1.0]).view(3, 1, 1).expand(3, 6, 6), atol=1e-5)
    assert video.min() >= -1 and video.max() <= 1


def test_errors_are_clear(tmp_path):
    videos, _ = _moving_videos()
    with pytest.raises(FileNotFoundError, match=r"^no video at .*missing\.gif$"):
        read_video(tmp_path / "missing.gif")
    with pytest.raises(ValueError, match=r"out\.avi: unsupported video format '\.avi'; use \.gif or \.mp4"):
        save_video(tmp_path / "out.avi", videos)
    with pytest.raises(ValueError, match=r"cannot read '\.txt' files"):
        read_video(_touch(tmp_path / "x.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty has no image frames"):
        read_video(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"strip\.jpg: a filmstrip is written as \.png"):
        save_filmstrip(tmp_path / "strip.jpg", videos)
    with pytest.raises(ValueError, match=r"save_video: expected videos \(B, 3, T, H, W\)"):
        save_video(tmp_path / "bad.gif", torch.zeros(2, 1, 4, 8, 8))


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    videos, _ = _moving_videos()
    path = tmp_path / "samples.gif"
    save_video(path, videos, scale=1)
    before = path.read_bytes()

    def broken_imwrite(uri, image, **kwargs):                        # writes a partial file, then fails
        open(uri, "wb").write(b"GIF89a")
        raise OSError("disk full")

    monkeypatch.setattr(video_io.iio, "imwrite", broken_imwrite)
    with pytest.raises(OSError):
        save_video(path, -videos, scale=1)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["samples.gif"]
