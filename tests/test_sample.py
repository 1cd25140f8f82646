"""sample.py end to end on a micro checkpoint pair (untrained weights): files, grid, seeds, priming, errors."""
import os
import shutil
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import sample
from mebt.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from mebt.config import Config, DataConfig, ModelConfig, TokenizerConfig
from mebt.distributed import rng_state
from mebt.model import MeBT
from mebt.pipeline import load_tokenizer
from mebt.tokenizer import VQTokenizer
from mebt.video_io import BORDER, read_video, to_uint8

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESOLUTION, FRAMES = 16, 16   # -> a (4, 4, 4) token grid
CELL = 8 * RESOLUTION         # save_video upscales 16 px frames 8x (to at least 128 px)
# Tiny models on a shared 2-core machine: OpenMP threads spend far longer synchronising than computing.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def micro_config() -> Config:
    return Config(name="micro", data=DataConfig(resolution=RESOLUTION, frames=FRAMES),
                  tokenizer=TokenizerConfig(channels=8, codebook_size=16, code_dim=8),
                  model=ModelConfig(vocab_size=16, grid=(4, 4, 4), d_model=32, n_heads=2, n_latents=8,
                                    encoder_layers=("cross", "self", "cross"), decoder_layers=("read", "write", "read"))
                  ).validate()


def tokenizer_payload(cfg: Config, seed: int) -> dict:
    """What mebt/train_tokenizer.py saves, for freshly initialised weights."""
    torch.manual_seed(seed)
    tokenizer = VQTokenizer(cfg.tokenizer)
    state = tokenizer.state_dict()
    return {"kind": "tokenizer", "model": state, "optimizer": torch.optim.Adam(tokenizer.parameters()).state_dict(),
            "step": 0, "rng": rng_state(), "config": cfg.to_dict(), "fingerprint": fingerprint(state)}


def mebt_payload(cfg: Config, tokenizer_path: str, tokenizer_fp: str) -> dict:
    """What mebt/train_transformer.py saves (the tokenizer record holds an absolute path)."""
    torch.manual_seed(1)
    model = MeBT(cfg.model)
    record = {"path": os.path.abspath(tokenizer_path), "config": cfg.to_dict(), "fingerprint": tokenizer_fp}
    return {"kind": "mebt", "model": model.state_dict(),
            "optimizer": torch.optim.AdamW(model.optim_groups(0.01)).state_dict(), "step": 0, "rng": rng_state(),
            "config": cfg.to_dict(), "tokenizer": record}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder like train.py's: tokenizer.pt + mebt.pt, plus a short GIF to prime with."""
    out = tmp_path_factory.mktemp("run")
    cfg = micro_config()
    tokenizer = tokenizer_payload(cfg, seed=0)
    save_checkpoint(out / "tokenizer.pt", tokenizer)
    save_checkpoint(out / "mebt.pt", mebt_payload(cfg, out / "tokenizer.pt", tokenizer["fingerprint"]))
    # 8 frames of 20x24 (not square, not 16 px: sample.py must crop and resize); a block moves 2 px per frame
    pixels = np.zeros((8, 20, 24, 3), np.uint8)
    pixels[...] = (40, 60, 200)
    for t in range(8):
        pixels[t, 6:12, 2 + 2 * t:8 + 2 * t] = (240, 200, 20)
    iio.imwrite(out / "prime.gif", pixels, duration=125, loop=0)
    return out


@pytest.fixture
def one_thread():
    """In-process sampling with one intra-op thread (see SUBPROCESS_ENV); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "sample.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=120)


def cli_args(run_dir, *extra):
    return [str(a) for a in ("--ckpt", run_dir / "mebt.pt", "--device", "cpu", "--steps", "4", *extra)]


def test_cli_writes_a_grid_of_samples_and_a_filmstrip_and_a_seed_reproduces_it(run_dir, tmp_path):
    first = run_cli(*cli_args(run_dir, "--num-samples", "3", "--frames", "8", "--seed", "1"))
    assert first.returncode == 0, first.stderr
    gif = run_dir / "samples" / "sample.gif"                              # the default: beside the checkpoint
    assert str(gif) in first.stdout and "wall time" in first.stdout
    frames = iio.imread(gif, index=None, mode="RGB")                      # (T, H', W', 3)
    side = 2 * (CELL + BORDER) + BORDER                                   # 3 samples -> a 2x2 grid
    assert frames.shape == (8, side, side, 3)
    cells = [frames[:, BORDER + r * (CELL + BORDER):][:, :CELL, BORDER + c * (CELL + BORDER):][:, :, :CELL]
             for r in range(2) for c in range(2)]
    assert [bool((cell != 255).any()) for cell in cells] == [True, True, True, False]   # 3 samples, 1 blank cell
    assert not np.array_equal(cells[0], cells[1])                         # different samples, not one repeated
    filmstrip = iio.imread(run_dir / "samples" / "sample.png")
    assert filmstrip.shape[0] == 3 * (CELL + BORDER) + BORDER             # one row per sample

    again = run_cli(*cli_args(run_dir, "--num-samples", "3", "--frames", "8", "--seed", "1", "--out", tmp_path / "a.gif"))
    other = run_cli(*cli_args(run_dir, "--num-samples", "3", "--frames", "8", "--seed", "2", "--out", tmp_path / "b.gif"))
    assert again.returncode == 0 and other.returncode == 0, again.stderr + other.stderr
    assert np.array_equal(iio.imread(tmp_path / "a.gif", index=None, mode="RGB"), frames)      # same seed: same pixels
    assert not np.array_equal(iio.imread(tmp_path / "b.gif", index=None, mode="RGB"), frames)  # the seed matters
    assert (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()


def test_default_length_is_the_trained_length(run_dir, one_thread):
    samples = sample.sample(sample.parse_args(cli_args(run_dir, "--num-samples", "2")))
    assert samples.videos.shape == (2, 3, FRAMES, RESOLUTION, RESOLUTION) and samples.tokens.shape == (2, 4, 4, 4)
    assert samples.given is None
    assert samples.videos.min() >= -1 and samples.videos.max() <= 1


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="CUDA-only check: no GPU here"))])
def test_prime_tokens_stay_fixed_in_every_sample(run_dir, one_thread, device):
    args = cli_args(run_dir, "--num-samples", "2", "--frames", "12", "--seed", "3", "--device", device)
    primed = sample.sample(sample.parse_args(args + ["--prime", str(run_dir / "prime.gif"), "--prime-frames", "4"]))
    tokenizer, _, _ = load_tokenizer(str(run_dir / "tokenizer.pt"), "cpu")
    expected = tokenizer.encode(read_video(run_dir / "prime.gif", frames=4, resolution=RESOLUTION)[None])   # (1, 1, 4, 4)
    assert primed.tokens.shape == (2, 3, 4, 4)
    assert torch.equal(primed.tokens[:, :1], expected.expand(2, -1, -1, -1))   # the first latent frame is the prime's
    assert torch.equal(primed.given[:, :16], expected.flatten().expand(2, -1)) and (primed.given[:, 16:] == -1).all()
    free = sample.sample(sample.parse_args(args))   # same seed without a prime: the first frame is generated
    assert not torch.equal(free.tokens[:, :1], primed.tokens[:, :1])


def test_last_frames_end_every_sample_and_the_frames_between_are_generated(run_dir, one_thread):
    gif = str(run_dir / "prime.gif")                                      # 8 frames: a block moving right
    args = cli_args(run_dir, "--num-samples", "2", "--seed", "3", "--prime", gif, "--prime-frames", "4")
    between = sample.sample(sample.parse_args(args + ["--last", gif, "--last-frames", "4"]))
    tokenizer, _, _ = load_tokenizer(str(run_dir / "tokenizer.pt"), "cpu")
    video = read_video(gif, resolution=RESOLUTION)                        # (3, 8, 16, 16)
    first, last = (tokenizer.encode(clip[None]) for clip in (video[:, :4], video[:, 4:]))   # (1, 1, 4, 4) each
    assert between.tokens.shape == (2, 4, 4, 4)
    assert torch.equal(between.tokens[:, :1], first.expand(2, -1, -1, -1))   # starts on the prime
    assert torch.equal(between.tokens[:, -1:], last.expand(2, -1, -1, -1))   # ends on the file's last 4 frames
    assert (between.given[:, 16:48] == -1).all() and torch.equal(between.given[:, 48:], last.flatten().expand(2, -1))
    primed = sample.sample(sample.parse_args(args))                       # same seed, no end: the end is generated
    assert torch.equal(primed.tokens[:, :1], between.tokens[:, :1])
    assert not torch.equal(primed.tokens[:, -1:], between.tokens[:, -1:])


def test_tokenizer_is_found_beside_a_moved_checkpoint_and_its_fingerprint_checked(run_dir, tmp_path, one_thread, capsys):
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(run_dir / "tokenizer.pt", moved / "tokenizer.pt")
    payload = load_checkpoint(run_dir / "mebt.pt", "mebt")
    payload["tokenizer"]["path"] = "/gone/run/tokenizer.pt"               # where it was trained, no longer there
    save_checkpoint(moved / "mebt.pt", payload)
    assert sample.main(["--ckpt", str(moved / "mebt.pt"), "--device", "cpu", "--steps", "2", "--num-samples", "1",
                        "--frames", "4"]) == 0
    assert (moved / "samples" / "sample.gif").exists() and str(moved / "tokenizer.pt") in capsys.readouterr().out

    save_checkpoint(moved / "tokenizer.pt", tokenizer_payload(micro_config(), seed=5))   # other weights, same name
    assert sample.main(["--ckpt", str(moved / "mebt.pt"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "was trained on" in err and "--tokenizer PATH" in err
    # an explicit --tokenizer is used anyway, with a warning
    assert sample.main(["--ckpt", str(moved / "mebt.pt"), "--tokenizer", str(moved / "tokenizer.pt"), "--device", "cpu",
                        "--steps", "2", "--num-samples", "1", "--frames", "4", "--out", str(tmp_path / "x.gif")]) == 0
    assert "warning:" in capsys.readouterr().err


def test_missing_checkpoint_is_one_line_exit_2_without_traceback(tmp_path):
    result = run_cli("--ckpt", tmp_path / "nope.pt")
    assert result.returncode == 2
    assert result.stderr.strip() == f"sample.py: error: --ckpt: no checkpoint at {tmp_path / 'nope.pt'}"


@pytest.mark.parametrize("extra, message", [
    (["--frames", "10"], "--frames 10: expected a positive multiple of 4"),
    (["--frames", "20"], "--frames 20: expected at most 16: the model's positional table"),
    (["--frames", "0"], "--frames 0: expected a positive multiple of 4"),
    (["--prime", "PRIME", "--prime-frames", "12"], "--prime: {run}/prime.gif has 8 frames, expected at least 12"),
    (["--prime", "PRIME", "--prime-frames", "16"], "--prime-frames 16: expected at most 12"),
    (["--prime", "PRIME"], "--prime FILE and --prime-frames K go together"),
    (["--last-frames", "4"], "--last FILE and --last-frames K go together"),
    (["--last", "PRIME", "--last-frames", "12"], "--last: {run}/prime.gif has 8 frames, expected at least 12"),
    (["--last", "PRIME", "--last-frames", "6"], "--last-frames 6: expected a positive multiple of 4"),
    (["--prime", "PRIME", "--prime-frames", "8", "--last", "PRIME", "--last-frames", "8"],
     "--last-frames 8: expected at most 4: at least one latent frame"),
    (["--out", "OUT/s.avi"], "--out {tmp}/s.avi: unknown video format '.avi'; use .gif or .mp4"),
    (["--ckpt", "RUN/tokenizer.pt"], "--ckpt: {run}/tokenizer.pt is a 'tokenizer' checkpoint, expected 'mebt'"),
    (["--tokenizer", "RUN/mebt.pt"], "--tokenizer: {run}/mebt.pt is a 'mebt' checkpoint, expected 'tokenizer'"),
    (["--num-samples", "0"], "--num-samples 0: expected at least 1"),
    (["--foreground-temperature", "0"], "--foreground-temperature 0.0: expected > 0 (1 = off)"),
    (["--frames", "4", "--bootstrap", "17"], "--bootstrap 17: expected at most 16, the tokens left to generate"),
])
def test_bad_input_is_one_line_naming_the_flag(run_dir, tmp_path, capsys, extra, message):
    fill = {"PRIME": str(run_dir / "prime.gif"), "OUT/s.avi": str(tmp_path / "s.avi"),
            "RUN/tokenizer.pt": str(run_dir / "tokenizer.pt"), "RUN/mebt.pt": str(run_dir / "mebt.pt")}
    argv = cli_args(run_dir, "--out", tmp_path / "s.gif") + [fill.get(a, a) for a in extra]
    assert sample.main(argv) == 2   # argparse keeps the last --out / --ckpt given
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("sample.py: error: " + message.format(run=run_dir, tmp=tmp_path)), err
    assert not os.listdir(tmp_path)   # nothing was written


def test_npy_out_holds_every_sample_as_uint8_decoded_in_batches(run_dir, tmp_path, capsys):
    args = cli_args(run_dir, "--num-samples", "5", "--batch-size", "2", "--frames", "8", "--seed", "4",
                    "--out", tmp_path / "samples.npy")
    assert sample.main(args) == 0
    saved = np.load(tmp_path / "samples.npy")
    assert saved.dtype == np.uint8 and saved.shape == (5, 8, RESOLUTION, RESOLUTION, 3)
    assert os.listdir(tmp_path) == ["samples.npy"]                        # no filmstrip, no temporary file left
    assert "sampling" in capsys.readouterr().err                          # a progress bar over the videos
    in_memory = sample.sample(sample.parse_args(args))                    # the same batches, kept in memory
    assert np.array_equal(saved, to_uint8(in_memory.videos)) and len({v.tobytes() for v in saved}) == 5
    assert sample.batch_size(sample.parse_args(cli_args(run_dir, "--num-samples", "40", "--out", "x.npy"))) == 16
    assert sample.batch_size(sample.parse_args(cli_args(run_dir, "--num-samples", "40"))) == 40   # a grid: at once


def test_npy_out_interrupted_leaves_no_file(run_dir, tmp_path, monkeypatch, capsys):
    calls = []

    def failing_decode(*args, **kwargs):                                  # the second batch fails
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("decoding failed")
        return real_decode(*args, **kwargs)
    real_decode = sample.decode
    monkeypatch.setattr(sample, "decode", failing_decode)
    out = tmp_path / "samples.npy"
    assert sample.main(cli_args(run_dir, "--num-samples", "4", "--batch-size", "2", "--frames", "4",
                                "--out", out)) == 2
    assert "decoding failed" in capsys.readouterr().err and not os.listdir(tmp_path)   # no half-written .npy


def test_a_prime_that_is_not_a_video_is_one_line_naming_it_and_the_formats(run_dir, tmp_path, capsys):
    (tmp_path / "clip.gif").write_text("I am a text file with a .gif name\n")
    argv = cli_args(run_dir, "--prime", tmp_path / "clip.gif", "--prime-frames", "4", "--out", tmp_path / "s.gif")
    assert sample.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "pyav" not in err
    assert err.startswith(f"sample.py: error: --prime: {tmp_path / 'clip.gif'}: not a readable .gif video")
    assert err.endswith("we read .mp4 .mov .avi .webm (with imageio-ffmpeg), .gif files and folders of .jpg/.png frames")
