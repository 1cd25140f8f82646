"""Sample videos from a trained MeBT: iterative masked decoding -> tokenizer -> a GIF/MP4 grid + a PNG filmstrip.

Everything comes from the checkpoint: the config (resolution, length, decoding defaults) and the tokenizer it was
trained on (the tokenizer.pt beside it, else the path it recorded; its weights must have the recorded fingerprint).

    python sample.py --ckpt out/mebt.pt                                      # 8 full-length samples -> out/samples/sample.gif
    python sample.py --ckpt out/mebt.pt --num-samples 4 --frames 32 --steps 16 --seed 1 --out /tmp/short.gif
    python sample.py --ckpt out/mebt.pt --top-k 32 --bootstrap 64 --revise 2 --revise-temperature 0.7 --context-temperature 4
    python sample.py --ckpt out/mebt.pt --prime clip.gif --prime-frames 16   # continue the first 16 frames of a video
    python sample.py --ckpt out/mebt.pt --prime a.gif --prime-frames 16 --last b.gif --last-frames 16   # fill in between
    python sample.py --ckpt out/mebt.pt --out out/samples/sample.mp4         # MP4 needs `pip install imageio-ffmpeg`
    python sample.py --ckpt out/mebt.pt --num-samples 2048 --frames 16 --out samples.npy   # for bench.py fvd

Writes the grid (one cell per sample) to --out and a filmstrip (one row per sample) beside it as <stem>.png; an
--out ending in .npy instead gets every sample as uint8 (N, T, H, W, 3), decoded --batch-size at a time.
Mistakes (missing or wrong checkpoint, bad --frames, a too-short prime, an unknown output suffix) are one line
on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from mebt.checkpoint import atomic_write
from mebt.decoding import decode
from mebt.pipeline import check_tokenizer_matches, load_mebt, load_tokenizer, sampling_settings
from mebt.video_io import read_video, save_filmstrip, save_video, to_uint8

FPS = 8                  # playback speed of the written grid
NPY_BATCH = 16           # default videos per decode when writing an .npy of many samples
FILMSTRIP_COLUMNS = 16   # the filmstrip shows about this many frames per sample


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only to flags with a fixed default; the help of a None default explains it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Sample videos from a trained MeBT checkpoint (see the docstring of sample.py).",
                                formatter_class=HelpFormatter)
    p.add_argument("--ckpt", required=True, help="the transformer checkpoint written by train.py, e.g. out/mebt.pt")
    p.add_argument("--tokenizer", default=None,
                   help="tokenizer checkpoint to decode tokens to pixels. Default: the one the checkpoint was trained "
                        "on (tokenizer.pt beside it, else its recorded path)")
    p.add_argument("--frames", type=int, default=None,
                   help="video length: a multiple of the tokenizer's temporal factor (4), at most the trained length. "
                        "Default: the trained length. Fewer frames decode faster")
    p.add_argument("--num-samples", type=int, default=8,
                   help="videos to generate: a grid of them, or e.g. 2048 for FVD with --out samples.npy")
    p.add_argument("--batch-size", type=int, default=None,
                   help="videos decoded at once; lower it if memory runs out. Default: all of --num-samples for a "
                        f"grid, {NPY_BATCH} for an .npy")
    p.add_argument("--steps", type=int, default=None,
                   help="decoding steps (one model call each); the paper uses 32. Fewer is faster but reveals more tokens "
                        "per step, each chosen without seeing the others, so videos get less consistent. "
                        "Default: the checkpoint's config")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="token sampling temperature; below 1 gives safer, less varied videos; 0 = greedy")
    p.add_argument("--top-k", type=int, default=None,
                   help="the main decoding steps sample only among the k most likely tokens (the authors use 32 at "
                        "128 frames; bootstrap and revise always sample the whole codebook); default: the whole codebook")
    p.add_argument("--context-temperature", type=float, default=None,
                   help="Gumbel noise on which tokens are kept each step, annealed to 0 (paper: 4 at 128 frames, "
                        "8 at 16); higher = closer to random order, more diverse. Low values keep the likeliest token "
                        "(often the background) first and can leave videos empty. Default: the checkpoint's config")
    p.add_argument("--bootstrap", type=int, default=None,
                   help="reveal this many random tokens one per model call before the main loop (authors: 64); "
                        "more gives more consistent videos, slower. Default: the checkpoint's config")
    p.add_argument("--revise", type=int, default=None,
                   help="draft-and-revise rounds after decoding, two model calls each (authors: 2); fixes "
                        "inconsistent tokens. Default: the checkpoint's config")
    p.add_argument("--revise-temperature", type=float, default=None,
                   help="sampling temperature of the revise passes (authors: 0.7); below 1 favours the commonest "
                        "token, on our synthetic data the background. Default: the checkpoint's config")
    p.add_argument("--foreground-temperature", type=float, default=None,
                   help="below 1 sharpens every code but the background's, whose probability stays the model's: "
                        "steadier objects, fewer shapes and colours (0.5: README, 'Sharper object codes'; 1 = off). "
                        "Acts only on checkpoints of data with a flat background. Default: the checkpoint's (1)")
    p.add_argument("--seed", type=int, default=0, help="same seed + flags + checkpoint = the same videos")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--prime", default=None,
                   help="a video (.mp4 .mov .avi .webm .gif) or folder of frames to continue: its first "
                        "--prime-frames frames are centre-cropped/resized to the model's resolution, tokenized and "
                        "kept fixed in every sample")
    p.add_argument("--prime-frames", type=int, default=None,
                   help="how many frames of --prime to keep: a multiple of the temporal factor (4), fewer than "
                        "--frames")
    p.add_argument("--last", default=None,
                   help="a .gif, .mp4 or folder of frames to end on (interpolation, with or without --prime): its "
                        "last --last-frames frames are centre-cropped/resized, tokenized and kept fixed at the end "
                        "of every sample")
    p.add_argument("--last-frames", type=int, default=None,
                   help="how many frames of --last to keep: a multiple of the temporal factor (4); with "
                        "--prime-frames, fewer than --frames")
    p.add_argument("--out", default=None,
                   help="the grid video, .gif or .mp4 (a .png filmstrip is written beside it), or an .npy: every "
                        "sample as uint8 (N, T, H, W, 3) for video metrics (bench.py fvd). "
                        "Default: samples/sample.gif in the checkpoint's folder")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Every mistake visible before loading anything, as one line naming the flag."""
    for flag, minimum in (("num_samples", 1), ("batch_size", 1), ("steps", 1), ("top_k", 1), ("bootstrap", 0),
                          ("revise", 0), ("seed", 0)):
        value = getattr(args, flag)
        if value is not None and value < minimum:
            raise ValueError(f"--{flag.replace('_', '-')} {value}: expected at least {minimum}")
    for flag in ("temperature", "context_temperature", "revise_temperature"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise ValueError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: expected >= 0")
    if args.foreground_temperature is not None and args.foreground_temperature <= 0:
        raise ValueError(f"--foreground-temperature {args.foreground_temperature}: expected > 0 (1 = off)")
    if (args.prime is None) != (args.prime_frames is None):
        raise ValueError("--prime FILE and --prime-frames K go together: give both or neither")
    if (args.last is None) != (args.last_frames is None):
        raise ValueError("--last FILE and --last-frames K go together: give both or neither")
    try:
        device = torch.device(args.device)
    except RuntimeError:   # torch's message for a bad device string is long and generic
        raise ValueError(f"--device {args.device}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is available here; use --device cpu")


def output_paths(args: argparse.Namespace) -> tuple[str, str]:
    """(grid video path, filmstrip path); checked before any work so a typo does not waste a decode."""
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "samples", "sample.gif")
    stem, suffix = os.path.splitext(out)
    if suffix.lower() not in (".gif", ".mp4", ".npy"):
        raise ValueError(f"--out {out}: unknown video format {suffix or '(no suffix)'!r}; use .gif or .mp4 (a grid) "
                         "or .npy (every sample, for metrics)")
    if suffix.lower() == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ValueError(f"--out {out}: .mp4 needs `pip install imageio-ffmpeg`; or write a .gif")
    return out, stem + ".png"


def find_tokenizer(payload: dict, ckpt: str) -> str:
    """The tokenizer a MeBT checkpoint records: the file of that name beside the checkpoint (a run folder stays
    usable when moved or copied), else the recorded path."""
    record = payload.get("tokenizer")
    if not isinstance(record, dict) or "path" not in record:
        raise ValueError(f"--ckpt {ckpt} does not record its tokenizer: pass --tokenizer PATH")
    beside = os.path.join(os.path.dirname(os.path.abspath(ckpt)), os.path.basename(record["path"]))
    for path in (beside, record["path"]):
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"--ckpt {ckpt} was trained with the tokenizer {record['path']}, which is gone (also "
                            f"looked for {beside}): pass --tokenizer PATH")


def flagged(flag: str, error: Exception) -> Exception:
    """The same error with the flag it came from in front; a KeyError means a checkpoint lacks an entry."""
    if isinstance(error, KeyError):
        return ValueError(f"{flag}: the checkpoint has no {error} entry (not written by train.py?)")
    return type(error)(f"{flag}: {error}")


def load_models(args: argparse.Namespace, device: torch.device):
    """-> (MeBT, its Config, tokenizer), both models in eval mode on `device`."""
    try:
        model, cfg, payload = load_mebt(args.ckpt, device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise flagged("--ckpt", e) from None
    path = args.tokenizer or find_tokenizer(payload, args.ckpt)
    try:
        tokenizer, tokenizer_cfg, weights = load_tokenizer(path, device)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise flagged("--tokenizer", e) from None
    check_tokenizer_matches(tokenizer_cfg.tokenizer, cfg, path)   # vocabulary and downsampling must fit the model
    recorded = (payload.get("tokenizer") or {}).get("fingerprint")
    if weights != recorded:
        message = (f"{path} has tokenizer weights {weights} but {args.ckpt} was trained on {recorded}: "
                   "its tokens would decode to different pixels")
        if args.tokenizer is None:
            raise ValueError(message + "; pass --tokenizer PATH to use a tokenizer anyway")
        print(f"warning: {message} (using it because --tokenizer asked for it)", file=sys.stderr)
    step = payload.get("step", "?")
    print(f"model: {args.ckpt} ({cfg.name}, {model.num_params() / 1e6:.2f}M parameters, {step} steps); "
          f"tokenizer: {path} (weights {weights})")
    return model, cfg, tokenizer


def check_frames(flag: str, frames: int, factor: int, most: int, why: str) -> None:
    """frames must be a whole number of latent frames (factor video frames each) and at most `most`."""
    if frames < factor or frames % factor:
        raise ValueError(f"{flag} {frames}: expected a positive multiple of {factor} (the tokenizer's temporal "
                         "downsampling)")
    if frames > most:
        raise ValueError(f"{flag} {frames}: expected at most {most}: {why}")


def prime_tokens(args: argparse.Namespace, tokenizer, resolution: int, frames: int, device) -> torch.Tensor:
    """The first --prime-frames frames of --prime as tokens (1, k, h, w)."""
    factor = tokenizer.cfg.temporal_downsample
    check_frames("--prime-frames", args.prime_frames, factor, frames - factor,
                 f"at least one latent frame ({factor} frames) of the {frames} must be left to generate")
    try:
        video = read_video(args.prime, frames=args.prime_frames, resolution=resolution)   # (3, K, res, res)
    except (FileNotFoundError, ValueError) as e:
        raise flagged("--prime", e) from None
    print(f"prime: the first {args.prime_frames} frames of {args.prime}, centre-cropped and resized to "
          f"{resolution}x{resolution} (the model's resolution); their tokens stay fixed in every sample")
    return tokenizer.encode(video[None].to(device))   # (1, k, h, w)


def last_tokens(args: argparse.Namespace, tokenizer, resolution: int, room: int, device) -> torch.Tensor:
    """The last --last-frames frames of --last as tokens (1, k, h, w); room: the frames the prime leaves."""
    factor = tokenizer.cfg.temporal_downsample
    check_frames("--last-frames", args.last_frames, factor, room - factor,
                 f"at least one latent frame ({factor} frames) before them must be left to generate")
    try:
        video = read_video(args.last, resolution=resolution)   # (3, K, res, res): all of it, to take its end
    except (FileNotFoundError, ValueError) as e:
        raise flagged("--last", e) from None
    if video.shape[1] < args.last_frames:
        raise ValueError(f"--last: {args.last} has {video.shape[1]} frames, expected at least {args.last_frames}")
    print(f"last: the last {args.last_frames} frames of {args.last}, centre-cropped and resized to "
          f"{resolution}x{resolution}; their tokens end every sample")
    return tokenizer.encode(video[None, :, -args.last_frames:].to(device))   # (1, k, h, w)


class Samples(NamedTuple):
    videos: torch.Tensor         # (B, 3, T, H, W) float in [-1, 1], on the CPU
    tokens: torch.Tensor         # (B, t, h, w) long, on the CPU
    given: torch.Tensor | None   # (B, t*h*w) long, -1 = generated; None without --prime and --last


def sample(args: argparse.Namespace) -> Samples:
    """Load the checkpoint pair, decode --num-samples token grids and turn them into pixels (all in memory)."""
    parts = list(sample_batches(args))
    return Samples(*(None if part[0] is None else torch.cat(part) for part in zip(*parts)))


def sample_batches(args: argparse.Namespace) -> Iterator[Samples]:
    """sample(), --batch-size videos at a time: each batch is yielded as soon as it is decoded."""
    check_args(args)
    device = torch.device(args.device)
    model, cfg, tokenizer = load_models(args, device)
    factor = cfg.tokenizer.temporal_downsample
    t_max, h, w = cfg.model.grid
    frames = t_max * factor if args.frames is None else args.frames
    check_frames("--frames", frames, factor, t_max * factor,
                 f"the model's positional table holds {t_max} latent frames ({t_max * factor} frames)")
    grid = (frames // factor, h, w)   # the first t latent frames have the same flat positions as in (t_max, h, w)
    B, N = args.num_samples, grid[0] * h * w
    given = None
    if args.prime is not None or args.last is not None:
        given = torch.full((B, N), -1, dtype=torch.long, device=device)              # (B, N) -1 = generate
    if args.prime is not None:
        prime = prime_tokens(args, tokenizer, cfg.data.resolution, frames, device)   # (1, k, h, w)
        given[:, :prime.numel()] = prime.flatten()   # the first k latent frames are the first k*h*w flat positions
    if args.last is not None:
        last = last_tokens(args, tokenizer, cfg.data.resolution, frames - (args.prime_frames or 0), device)
        given[:, N - last.numel():] = last.flatten()   # the last k latent frames: the last k*h*w flat positions
    # decoding settings the flags leave open come from the checkpoint's config (what train.py sampled with);
    # its bootstrap count is capped at the tokens left to generate, an explicit --bootstrap must fit
    unknown = N if given is None else int((given[0] < 0).sum())
    if args.bootstrap is not None and args.bootstrap > unknown:
        raise ValueError(f"--bootstrap {args.bootstrap}: expected at most {unknown}, the tokens left to generate")
    settings = sampling_settings(cfg.train, unknown)
    flags = dict(steps=args.steps, context_temperature=args.context_temperature, bootstrap=args.bootstrap,
                 revise=args.revise, revise_temperature=args.revise_temperature,
                 foreground_temperature=args.foreground_temperature)
    settings.update({name: value for name, value in flags.items() if value is not None})
    calls = settings["bootstrap"] + settings["steps"] + 2 * settings["revise"]   # at most: the loop may stop early
    print(f"decoding {B} sample(s) of {frames} frames = {grid[0]}x{h}x{w} tokens in up to {calls} model calls "
          f"({settings['bootstrap']} bootstrap + {settings['steps']} steps + {settings['revise']} revise rounds x 2) "
          f"on {device}")
    start = time.time()
    generator = torch.Generator(device).manual_seed(args.seed)   # all of decoding's randomness: reproducible
    batch = batch_size(args)
    with tqdm(total=B, unit="video", desc="sampling", disable=batch >= B) as bar:   # decode() has its own bar
        for first in range(0, B, batch):
            b = min(batch, B - first)
            tokens = decode(model, b, grid, temperature=args.temperature, top_k=args.top_k,
                            given=None if given is None else given[:b], generator=generator, device=device,
                            progress=batch >= B, **settings)   # (b, t, h, w)
            videos = tokenizer.decode(tokens)   # (b, 3, T, H, W)
            bar.update(b)
            yield Samples(videos.cpu(), tokens.cpu(), None if given is None else given[:b].cpu())
    if device.type == "cuda":
        torch.cuda.synchronize(device)   # kernels run asynchronously: wait for them before reading the clock
    print(f"sampled {B} video(s) in {time.time() - start:.1f}s")


def batch_size(args: argparse.Namespace) -> int:
    """--batch-size, else all --num-samples at once for a grid, NPY_BATCH for an .npy."""
    if args.batch_size is not None:
        return args.batch_size
    return NPY_BATCH if (args.out or "").lower().endswith(".npy") else args.num_samples


def write_npy(args: argparse.Namespace, out: str) -> None:
    """--out *.npy: uint8 (N, T, H, W, 3), the layout video-metric tools read (bench.py fvd). Each batch goes
    straight into a memory-mapped temporary file, renamed to `out` once complete: memory holds one batch, never
    all the pixels twice, and an interrupted run leaves no half-written file."""
    with atomic_write(out) as tmp:
        array, first = None, 0
        for part in sample_batches(args):
            pixels = to_uint8(part.videos)   # (b, T, H, W, 3)
            if array is None:   # the frame size is known once the first batch is decoded
                array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                  shape=(args.num_samples, *pixels.shape[1:]))
            array[first:first + len(pixels)] = pixels
            first += len(pixels)
        array.flush()
        del array   # unmap before the rename


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.time()
    try:
        out, filmstrip = output_paths(args)
        if out.lower().endswith(".npy"):
            write_npy(args, out)
        else:
            samples = sample(args)
            save_video(out, samples.videos, fps=FPS)
            save_filmstrip(filmstrip, samples.videos, every=max(1, samples.videos.shape[2] // FILMSTRIP_COLUMNS))
    except (FileNotFoundError, ValueError) as e:
        print(f"sample.py: error: {e}", file=sys.stderr)   # one line, no traceback: these are the user's to fix
        return 2
    written = out if out.lower().endswith(".npy") else f"{out} and {filmstrip}"
    print(f"wrote {written} (wall time {time.time() - start:.1f}s, loading and writing included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
