"""Video files as streams: frame counts from container headers, and frame windows decoded on demand.

    count_frames("v_ApplyEyeMakeup_g08_c01.avi")              # -> 121, from the header: no decoding
    read_frames("clip.mp4", start=40, count=16, stride=4)      # -> (16, H, W, 3) uint8: frames 40, 44, ..., 100

Formats: .mp4 and .mov (the video track's sample table), .avi (the video stream header), .webm (no count in the
header: ffmpeg decodes it once to count), .gif (Pillow). All but .gif decode through the ffmpeg binary that the
imageio-ffmpeg package ships, imported only when a file needs it: without the package .gif files and folders of
image frames still read, and an .mp4 is one line saying what to install.

Reading streams: ffmpeg decodes from the first frame (a decoder must, to reach a frame between key frames) but
hands Python only the frames of the window (its `select` filter), and stops after the last one; Python holds one
window, never the whole video. A file that ends before its header said (a truncated download, dropped AVI frames)
is counted by decoding, and the window moves back to end at its real last frame.

Every failure is an UnreadableVideo (a ValueError) whose one-line message names the file.
Try it: python -c "from mebt.video_files import *; print(count_frames('out/samples/final.gif'))"
"""
from __future__ import annotations

import os
import struct

import numpy as np
from PIL import Image, ImageSequence

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".webm", ".gif")
WITHOUT_FFMPEG = ".gif files and folders of .jpg/.png frames"   # what reads with Pillow alone
READABLE = f"we read .mp4 .mov .avi .webm (with imageio-ffmpeg), {WITHOUT_FFMPEG}"


class UnreadableVideo(ValueError):
    """A video file we cannot count or decode; the message names the file."""


def _ffmpeg(path: str):
    """imageio-ffmpeg, imported on first use (a machine without it still reads GIFs and frame folders)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise UnreadableVideo(f"{path}: reading {os.path.splitext(path)[1]} needs the imageio-ffmpeg package "
                              f"(pip install imageio-ffmpeg); without it we read {WITHOUT_FFMPEG}") from None
    return imageio_ffmpeg


# ---------------------------------------------------------------------------------------------- frame counts

def _boxes(f, start: int, end: int):
    """ISO base media (MP4/MOV) boxes between byte offsets start and end: yields (type, payload start, box end)."""
    while start + 8 <= end:
        f.seek(start)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:                                  # a 64-bit size follows the type (boxes over 4 GiB)
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:                                # the last box runs to the end of the file
            size = end - start
        if size < header:
            raise ValueError(f"a {kind!r} box of {size} bytes")
        yield kind, start + header, min(start + size, end)
        start += size                                  # mdat (the frames) is skipped, never read


def _child(f, start: int, end: int, kind: bytes):
    return next(((s, e) for k, s, e in _boxes(f, start, end) if k == kind), None)


def _mp4_frames(f, size: int) -> int:
    """Samples of the first video track: moov/trak/mdia/{hdlr = 'vide', minf/stbl/stsz}."""
    moov = _child(f, 0, size, b"moov")
    if moov is None:
        raise ValueError("no 'moov' box (not an MP4/MOV file, or a truncated one)")
    for kind, start, end in _boxes(f, *moov):
        mdia = _child(f, start, end, b"mdia") if kind == b"trak" else None
        hdlr = mdia and _child(f, *mdia, b"hdlr")
        if hdlr is None:
            continue
        f.seek(hdlr[0] + 8)                            # version/flags (4), pre_defined (4), then the handler type
        if f.read(4) != b"vide":
            continue                                   # an audio or subtitle track
        boxes = [mdia]
        for path in (b"minf", b"stbl"):
            boxes.append(_child(f, *boxes[-1], path) if boxes[-1] else None)
        table = boxes[-1] and (_child(f, *boxes[-1], b"stsz") or _child(f, *boxes[-1], b"stz2"))
        if table is None:
            raise ValueError("the video track has no sample table")
        f.seek(table[0] + 8)                           # version/flags (4), sample size or field size (4), count
        return struct.unpack(">I", f.read(4))[0]
    raise ValueError("no video track")


def _avi_frames(f, size: int) -> int:
    """The video stream's length (strh.dwLength of the 'vids' stream), else the main header's frame count."""
    if f.read(12)[8:] != b"AVI ":
        raise ValueError("not a RIFF AVI file")
    total = None
    start, end = 12, size
    while start + 8 <= end:                           # RIFF chunks: 4-byte id, little-endian size, payload, pad
        f.seek(start)
        kind, length = struct.unpack("<4sI", f.read(8))
        payload = start + 8
        if kind == b"LIST":
            if f.read(4) in (b"hdrl", b"strl"):        # descend into the header lists only, never into 'movi'
                start, end = payload + 4, min(payload + length, end)
                continue
        elif kind == b"avih":
            f.seek(payload + 16)                      # MicroSecPerFrame, MaxBytesPerSec, Padding, Flags, TotalFrames
            total = struct.unpack("<I", f.read(4))[0]
        elif kind == b"strh":
            fields = f.read(36)
            if fields[:4] == b"vids":
                return struct.unpack("<I", fields[32:36])[0]   # dwLength, in frames for a video stream
        start = payload + length + (length & 1)       # chunks are padded to even sizes
    if total is None:
        raise ValueError("no AVI main header")
    return total


def _decoded_frames(path: str) -> int:
    """Count by decoding (formats without a count in the header, files shorter than their header)."""
    try:
        return _ffmpeg(path).count_frames_and_secs(path)[0]
    except (OSError, RuntimeError) as error:
        raise UnreadableVideo(f"{path}: ffmpeg cannot decode it ({_first_line(error)})") from None


def _first_line(error: Exception) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0].strip() if lines else type(error).__name__


def count_frames(path) -> int:
    """Frames in a video file, from its header where the format has one (reads a few KiB)."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UnreadableVideo(f"{path}: cannot read {suffix!r} files; {READABLE}")
    if suffix != ".gif":
        _ffmpeg(path)                                  # fail here, at indexing, not later in a DataLoader worker
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise ValueError("the file is empty (0 bytes)")
        if suffix == ".gif":
            with Image.open(path) as image:
                return image.n_frames                  # Pillow walks the frame headers without decoding pixels
        if suffix == ".webm":
            return _decoded_frames(path)
        with open(path, "rb") as f:
            count = _mp4_frames(f, size) if suffix in (".mp4", ".mov") else _avi_frames(f, size)
        return count if count > 0 else _decoded_frames(path)   # fragmented MP4s keep their counts elsewhere
    except UnreadableVideo:
        raise
    except (OSError, ValueError, struct.error, EOFError) as error:
        raise UnreadableVideo(f"{path}: not a readable {suffix} video ({_first_line(error)}); {READABLE}") from None


# ---------------------------------------------------------------------------------------------- decoding

def _gif_frames(path: str, start: int, count: int, stride: int) -> list[np.ndarray]:
    last = start + (count - 1) * stride
    frames = []
    with Image.open(path) as image:
        for index, frame in enumerate(ImageSequence.Iterator(image)):   # decodes in order (GIF frames are deltas)
            if index > last:
                break
            if index >= start and (index - start) % stride == 0:
                frames.append(np.asarray(frame.convert("RGB")))
    return frames


def _ffmpeg_frames(path: str, start: int, count: int, stride: int) -> list[np.ndarray]:
    wanted = f"between(n\\,{start}\\,{start + (count - 1) * stride})*not(mod(n-{start}\\,{stride}))"
    # select: only the window's frames reach the pipe; passthrough: no frame duplicated or dropped to fake a
    # constant rate; -frames:v: ffmpeg exits after the last one instead of decoding the rest of the file
    # -threads 1: parallelism comes from DataLoader workers, each decoding its own file; ffmpeg's own decoding
    # threads (one per core by default) would only compete with them
    stream = _ffmpeg(path).read_frames(path, input_params=["-threads", "1"],
                                       output_params=["-vf", f"select={wanted}", "-fps_mode", "passthrough",
                                                      "-frames:v", str(count)])
    try:
        width, height = next(stream)["size"]           # the first item is the header (size after rotation)
        return [np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in stream]
    finally:
        stream.close()                                 # stops ffmpeg if we leave early


def read_frames(path, start: int, count: int, stride: int = 1) -> np.ndarray:
    """Frames start, start + stride, ... (count of them) of a video file: (count, H, W, 3) uint8.

    If the file ends early (fewer frames than its header said), the window moves back to end at its last frame;
    a file with fewer than (count - 1) * stride + 1 frames in all is an UnreadableVideo."""
    path = os.fspath(path)
    if start < 0 or count < 1 or stride < 1:
        raise ValueError(f"read_frames: start={start}, count={count}, stride={stride}: expected >= 0, >= 1, >= 1")
    reader = _gif_frames if path.lower().endswith(".gif") else _ffmpeg_frames
    try:
        frames = reader(path, start, count, stride)
        if len(frames) < count:                        # shorter than the header said: count, then shift back
            total = count_frames(path) if reader is _gif_frames else _decoded_frames(path)
            span = (count - 1) * stride + 1
            if total < span or start + span <= total:  # too short, or a real decoding error inside the file
                raise UnreadableVideo(f"{path}: decoded {total} frames, a window of {count} frames (stride "
                                      f"{stride}) from frame {start} needs {start + span}")
            frames = reader(path, total - span, count, stride)
    except UnreadableVideo:
        raise
    except (OSError, ValueError, RuntimeError, EOFError) as error:
        raise UnreadableVideo(f"{path}: cannot decode it ({_first_line(error)})") from None
    if len(frames) < count or any(f.shape != frames[0].shape for f in frames):
        raise UnreadableVideo(f"{path}: decoded {len(frames)} frames of differing or missing sizes, expected {count}")
    return np.stack(frames)                            # (count, H, W, 3)
