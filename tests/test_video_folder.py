"""Real videos: header frame counts, streamed windows, folders of files and frames, skips and errors, workers.

Every video here is written by the test itself (imageio: .mp4/.mov/.avi/.webm through imageio-ffmpeg, .gif through
Pillow). Frame t is a flat colour whose red channel is 8 * t, so order, start and stride read back from pixels.

    python -m pytest -q tests/test_video_folder.py
"""
import os
import re
import sys
import tracemalloc

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from mebt import video_files
from mebt.clip_loader import batches, clip_loader
from mebt.video_files import UnreadableVideo, count_frames, read_frames
from mebt.video_folder import VideoFile, VideoFolder, loader_workers


def numbered(frames: int, height: int = 24, width: int = 32) -> np.ndarray:
    """(T, H, W, 3) uint8: frame t has red 8 * t (lossy codecs keep a flat colour within a few levels)."""
    pixels = np.zeros((frames, height, width, 3), np.uint8)
    pixels[..., 0] = (8 * np.arange(frames) % 256)[:, None, None]
    pixels[..., 1], pixels[..., 2] = 128, 60
    return pixels


def write(path, pixels, **options):
    """Write a video file; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gif":
        iio.imwrite(path, pixels, duration=40, loop=0)
    else:
        codec = {".avi": "mpeg4", ".webm": "libvpx"}.get(path.suffix, "libx264")
        if path.suffix == ".webm":                                            # VP8's default bitrate blurs colours
            options = {"output_params": ["-crf", "4", "-b:v", "4M"], **options}
        iio.imwrite(path, pixels, fps=25, codec=codec, macro_block_size=1, **options)
    return path


def indices(frames) -> list[int]:
    """Frame numbers of uint8 frames (T, H, W, 3) or of a clip (3, T, H, W) in [-1, 1] written by numbered()."""
    if isinstance(frames, torch.Tensor):
        red = (frames[0].mean((1, 2)) + 1) * 127.5
    else:
        red = frames[..., 0].reshape(len(frames), -1).mean(1)
    return [round(float(v) / 8) for v in red]


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".avi", ".webm", ".gif"])
def test_every_format_counts_its_frames_and_reads_windows(tmp_path, suffix):
    path = write(tmp_path / f"v{suffix}", numbered(30))
    assert count_frames(path) == 30
    window = read_frames(path, start=3, count=5, stride=4)
    assert window.shape == (5, 24, 32, 3) and window.dtype == np.uint8
    assert indices(window) == [3, 7, 11, 15, 19]
    assert indices(read_frames(path, 0, 2)) == [0, 1]


def test_reading_streams_only_the_window(tmp_path, monkeypatch):
    path = write(tmp_path / "long.mp4", numbered(400, 64, 64))                # 400 frames = 4.9 MB decoded
    import imageio_ffmpeg                                                     # here: the module imports without it
    delivered = []
    real = imageio_ffmpeg.read_frames

    def counting(*args, **kwargs):                                            # frames ffmpeg hands to Python
        for item in real(*args, **kwargs):
            delivered.append(item)
            yield item
    monkeypatch.setattr(imageio_ffmpeg, "read_frames", counting)
    tracemalloc.start()
    window = read_frames(path, start=300, count=16, stride=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert indices(window) == [(300 + 2 * k) % 32 for k in range(16)]          # red wraps every 32 frames
    assert len(delivered) == 1 + 16                                           # the header, then the window only
    assert peak < 1_000_000                                                   # one window (197 KB), not the video


def test_file_shorter_than_its_header_shifts_the_window_back(tmp_path):
    path = write(tmp_path / "cut.mp4", numbered(40), output_params=["-movflags", "+faststart"])   # header first
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])                               # a truncated download
    assert count_frames(path) == 40                                           # the header still says 40
    real = video_files._decoded_frames(str(path))
    assert 5 < real < 40
    assert indices(read_frames(path, 0, 4)) == [0, 1, 2, 3]
    tail = read_frames(path, 36, 4)                                           # frames 36..39 are gone
    assert indices(tail) == list(range(real - 4, real))                       # the last 4 that exist
    with pytest.raises(UnreadableVideo, match=r"cut\.mp4: decoded \d+ frames, a window of 60"):
        read_frames(path, 0, 60)


@pytest.mark.parametrize("name, content, reason", [
    ("corrupt.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4, "not a readable .mp4 video"),
    ("empty.avi", b"", r"the file is empty \(0 bytes\)"),
    ("notes.gif", b"this is a text file, not a GIF\n", "not a readable .gif video"),
])
def test_unreadable_files_are_one_line_naming_them_and_the_formats(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableVideo) as error:
        count_frames(path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert re.search(reason, message)
    assert "we read .mp4 .mov .avi .webm (with imageio-ffmpeg), .gif files and folders" in message


def test_without_imageio_ffmpeg_gifs_still_read_and_mp4_says_what_to_install(tmp_path, monkeypatch):
    gif, mp4 = write(tmp_path / "a.gif", numbered(6)), write(tmp_path / "a.mp4", numbered(6))
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)   # `import imageio_ffmpeg` now fails
    assert indices(read_frames(gif, 1, 3)) == [1, 2, 3]
    with pytest.raises(UnreadableVideo, match=r"a\.mp4: reading \.mp4 needs the imageio-ffmpeg package \(pip "
                                              r"install imageio-ffmpeg\); without it we read \.gif files and"):
        count_frames(mp4)
    with pytest.raises(UnreadableVideo, match="pip install imageio-ffmpeg"):
        read_frames(mp4, 0, 2)


def ucf_like(root):
    """A UCF-101-like tree with every awkward case: formats, sizes, a too-short and three unreadable files."""
    write(root / "Surfing" / "v_Surfing_g01_c01.avi", numbered(20))
    write(root / "Surfing" / "v_Surfing_g01_c02.mp4", numbered(24, 20, 36))   # non-square, odd size
    write(root / "Yoga" / "portrait.mp4", numbered(20, 40, 24))                # taller than wide
    write(root / "Yoga" / "clip.gif", numbered(16))
    write(root / "Yoga" / "three.mp4", numbered(3))                            # 3 frames: shorter than a window
    for n in range(10):                                                        # a frame folder beside the files
        Image.fromarray(numbered(10)[n]).save(root / "Yoga" / f"frame_{n}.png")
    (root / "Yoga" / "empty.mp4").write_bytes(b"")
    (root / "Yoga" / "corrupt.avi").write_bytes(os.urandom(2048))
    (root / "Yoga" / "text.gif").write_text("not a gif")


def test_folder_of_files_and_frames_skips_unreadable_and_short_videos_in_one_line_each(tmp_path, capsys):
    ucf_like(tmp_path)
    data = VideoFolder(tmp_path, frames=8, resolution=16)
    lines = capsys.readouterr().out.strip().splitlines()
    unreadable = [line for line in lines if line.startswith("[data] skipped unreadable video")]
    assert len(unreadable) == 3 and all(name in "\n".join(unreadable) for name in ("empty.mp4", "corrupt.avi", "text.gif"))
    assert f"[data] {tmp_path}: skipped 1 of 6 videos shorter than 8 frames (frames=8 x stride=1)" in lines
    files = sorted(v.path.name for v in data.videos if isinstance(v, VideoFile))
    assert files == ["clip.gif", "portrait.mp4", "v_Surfing_g01_c01.avi", "v_Surfing_g01_c02.mp4"]
    assert sum(isinstance(v, list) for v in data.videos) == 1 and len(data) == 5   # + the frame folder
    for i in range(len(data)):
        clip = data[i]
        assert clip.shape == (3, 8, 16, 16) and clip.dtype == torch.float32 and -1 <= clip.min() <= clip.max() <= 1
        first = indices(clip)[0]
        assert indices(clip) == list(range(first, first + 8))                 # a random, contiguous window
    assert data.clip_starts() == [(i, s) for i, v in enumerate(data.videos) for s in range(0, len(v) - 7, 8)]


def test_stride_windows_and_clip_starts(tmp_path):
    write(tmp_path / "v.mp4", numbered(30))
    data = VideoFolder(tmp_path, frames=4, resolution=8, stride=3)            # a window spans 4 x 3 = 12 frames
    assert indices(data.clip(0, 5)) == [5, 8, 11, 14]
    assert data.clip_starts() == [(0, 0), (0, 12)] and data.starts(0) == 19
    with pytest.raises(ValueError, match="start=19"):
        data.clip(0, 19)


def test_non_square_and_portrait_videos_are_centre_cropped(tmp_path):
    for name, (height, width) in (("wide.mp4", (20, 36)), ("tall.mp4", (36, 20))):
        pixels = np.zeros((8, height, width, 3), np.uint8)
        pixels[...] = (0, 0, 255)                                             # blue margins, cropped away ...
        top, left = (height - 20) // 2, (width - 20) // 2
        pixels[:, top:top + 20, left:left + 20] = (0, 255, 0)                 # ... around a green centre square
        write(tmp_path / name, pixels)
    data = VideoFolder(tmp_path, frames=8, resolution=10)
    for i in range(2):
        clip = data.clip(i, 0)                                                # (3, 8, 10, 10)
        assert (clip[1] > 0.85).all() and (clip[[0, 2]] < -0.5).all()         # green: no blue margin (+1) left


def test_train_and_test_folders_are_the_splits(tmp_path, capsys):
    write(tmp_path / "train" / "a.mp4", numbered(12))
    write(tmp_path / "train" / "b.gif", numbered(12))
    write(tmp_path / "test" / "c.mp4", numbered(12))
    train, held_out = (VideoFolder(tmp_path, 4, 8, split=s) for s in ("train", "eval"))
    assert [v.path.name for v in train.videos] == ["a.mp4", "b.gif"] and [v.path.name for v in held_out.videos] == ["c.mp4"]
    assert "no held-out split" not in capsys.readouterr().out


def test_workers_read_the_same_clips_as_the_main_process(tmp_path):
    for k in range(3):
        write(tmp_path / f"v{k}.mp4", numbered(20 + 4 * k))
    data = VideoFolder(tmp_path, frames=4, resolution=8)
    draws = {0: [(0, 1), (2, 9)], 1: [(1, 5), (0, 0)], 2: [(2, 13), (1, 3)]}   # step -> (video, first frame)
    serial = list(batches(clip_loader(data, 4, draws.get, range(3), workers=0)))
    parallel = list(batches(clip_loader(data, 4, draws.get, range(3), workers=2)))
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel)) and len(parallel) == 3
    assert [indices(clip)[0] for clip in serial[2]] == [13, 3]
    assert loader_workers(data) >= 1 and loader_workers(torch.utils.data.TensorDataset(torch.zeros(2))) == 0


def test_unreadable_frame_in_a_worker_is_one_line_naming_it(tmp_path):
    for n in range(8):
        Image.fromarray(numbered(8)[n]).save(tmp_path / f"f_{n}.jpg")
    (tmp_path / "f_5.jpg").write_bytes(b"truncated")
    data = VideoFolder(tmp_path, frames=4, resolution=8)
    with pytest.raises(ValueError) as error:
        list(batches(clip_loader(data, 4, lambda step: [(0, 4)], range(1), workers=1)))
    assert str(error.value).startswith("cannot read frame") and "f_5.jpg" in str(error.value)
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)


def test_tokenizer_stage_trains_on_a_video_folder_identically_with_and_without_workers(tmp_path):
    from mebt.config import Config, DataConfig, ModelConfig, TokenizerConfig, TrainConfig
    from mebt.train_tokenizer import train_tokenizer
    for k in range(3):
        write(tmp_path / "videos" / f"v{k}.mp4", numbered(24 + 8 * k, 20, 28))
    cfg = Config(name="micro", data=DataConfig(dataset="videos", resolution=16, frames=16, stride=1),
                 tokenizer=TokenizerConfig(channels=8, codebook_size=16, code_dim=8),
                 model=ModelConfig(vocab_size=16, grid=(4, 4, 4), d_model=32, n_heads=2, n_latents=8,
                                   encoder_layers=("cross",), decoder_layers=("read",)),
                 train=TrainConfig(tokenizer_steps=3, tokenizer_batch_size=2, tokenizer_clip_frames=8,
                                   eval_every=3)).validate()
    weights = [train_tokenizer(cfg, str(tmp_path / f"run{w}"), data_dir=str(tmp_path / "videos"), workers=w).state_dict()
               for w in (0, 2)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])   # the same clips, in the same order


def test_taichi_layout_folders_named_mp4_hold_png_frames(tmp_path):
    # load_videos.py --format .png (its default) writes each video as a folder named <name>#<start>#<end>.mp4
    for split, name in (("train", "abc#000010#000090.mp4"), ("test", "xyz#000000#000050.mp4")):
        folder = tmp_path / "taichi-png" / split / name
        folder.mkdir(parents=True)
        for n in range(12):
            Image.fromarray(numbered(12)[n]).save(folder / f"{n:07d}.png")
    write(tmp_path / "taichi-png" / "train" / "def#000000#000020.mp4", numbered(12))   # --format .mp4: a file
    train = VideoFolder(tmp_path / "taichi-png", frames=3, resolution=8, stride=4)
    held_out = VideoFolder(tmp_path / "taichi-png", frames=3, resolution=8, stride=4, split="eval")
    assert len(train) == 2 and len(held_out) == 1 and isinstance(held_out.videos[0], list)
    assert indices(held_out.clip(0, 0)) == [0, 4, 8] and indices(train.clip(1, 0)) == [0, 4, 8]
