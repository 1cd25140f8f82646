"""Training: exact resume (both stages), crash-safe checkpoints, 2-process DDP, NaN stop, the CLI's one-line
errors, and train.py end to end on a folder of real JPEG frames.

The training functions run on a micro config (16x16 px, 16 frames -> a 4x4x4 token grid, tiny widths), so
every run takes a second or two. CLI tests start train.py in a subprocess; the end-to-end one swaps the micro
config in for the preset (the real presets take minutes per step on a shared 2-core machine).
"""
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

import mebt.cpu_load as cpu_load
import mebt.train_tokenizer as train_tokenizer_module
import mebt.train_transformer as train_transformer_module
import train
from mebt.checkpoint import load_checkpoint, save_checkpoint
from mebt.config import Config, DataConfig, ModelConfig, TokenizerConfig, TrainConfig, get_preset
from mebt.distributed import Stopped, setup, shared_generator, step_generator, teardown
from mebt.tokenizer import VQTokenizer
from mebt.train_tokenizer import train_tokenizer
from mebt.train_transformer import train_transformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny models on a shared 2-core machine: OpenMP threads spend longer synchronising than computing.
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def micro_config(**train) -> Config:
    settings = dict(tokenizer_steps=4, tokenizer_batch_size=2, tokenizer_clip_frames=8, transformer_steps=6,
                    batch_size=4, warmup_steps=2, eval_every=3, sample_steps=2)
    return Config(name="micro", data=DataConfig(resolution=16, frames=16, num_videos=8, num_eval_videos=4),
                  tokenizer=TokenizerConfig(channels=8, codebook_size=32, code_dim=8),
                  model=ModelConfig(vocab_size=32, grid=(4, 4, 4), d_model=32, n_heads=2, n_latents=8,
                                    encoder_layers=("cross", "self", "cross"), decoder_layers=("read", "write", "read")),
                  train=TrainConfig(**{**settings, **train})).validate()


def signal_at(module, name: str, step: int, monkeypatch) -> None:
    """Wrap module.name (called once per training step) so that its call number `step` sends us SIGTERM."""
    real, calls = getattr(module, name), []

    def wrapped(*args, **kwargs):
        if len(calls) == step:
            os.kill(os.getpid(), signal.SIGTERM)   # as if the job scheduler stopped us mid-step
        calls.append(1)
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, wrapped)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7, msg=name)


def test_step_randomness_depends_only_on_seed_step_and_rank():
    first = torch.randint(1000, (8,), generator=step_generator(0, 5, 0))
    torch.rand(100)                                                           # global RNG use in between is irrelevant
    assert torch.equal(torch.randint(1000, (8,), generator=step_generator(0, 5, 0)), first)
    assert not torch.equal(torch.randint(1000, (8,), generator=step_generator(0, 5, 1)), first)   # ranks: other shards
    assert not torch.equal(torch.randint(1000, (8,), generator=step_generator(0, 6, 0)), first)   # steps: other draws
    assert not torch.equal(torch.randint(1000, (8,), generator=step_generator(1, 5, 0)), first)   # the seed matters


def test_a_window_model_trains_on_windows_from_the_whole_clip_reindexed_from_frame_zero():
    from mebt.curriculum import Curriculum
    cfg = micro_config()
    cfg.data.frames, cfg.model.grid = 32, (2, 4, 4)      # clips of 8 latent frames, a model of 2-frame windows
    cfg.validate()
    cache = torch.arange(8).view(1, 8, 1, 1).expand(5, 8, 4, 4).contiguous()   # every token = its latent frame
    schedule = Curriculum(2, 1.0, enabled=False)
    starts = set()
    for step in range(40):
        context, context_pos, target_pos, targets = train_transformer_module.training_batch(
            cache, step, schedule, cfg, step_generator(0, step, 0), shared_generator(0, step))
        positions = torch.cat([context_pos, target_pos], 1)                      # (B, 2*4*4)
        tokens = torch.cat([context, targets], 1)
        assert sorted(positions[0].tolist()) == list(range(32))                 # frames 0-1 of the model's grid
        frame = positions // 16                                                 # 0 or 1 within the window
        starts.update((tokens - frame)[:, 0].tolist())                          # the clip frame the window starts at
        assert ((tokens - frame) == (tokens - frame)[:, :1]).all()              # one contiguous window per sample
    assert starts == set(range(7))                                              # windows from all over the clip
    with pytest.raises(ValueError, match="window"):
        cfg.model.grid = (9, 4, 4)
        cfg.validate()


def test_dtype_auto_picks_bf16_only_where_the_cpu_multiplies_bf16_natively(monkeypatch, tmp_path):
    from mebt import pipeline
    cpu = torch.device("cpu")
    assert pipeline.resolve_dtype("fp32", cpu) == "fp32" and pipeline.resolve_dtype("bf16", cpu) == "bf16"
    for flags, expected in (("fpu sse avx512f avx512_bf16", "bf16"), ("fpu amx_bf16 amx_tile", "bf16"),
                            ("fpu sse avx2 avx512f", "fp32")):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
        real_open = open
        monkeypatch.setattr("builtins.open", lambda path, *a, **k: real_open(cpuinfo if path == "/proc/cpuinfo" else path, *a, **k))
        assert pipeline.resolve_dtype("auto", cpu) == expected, flags
        assert pipeline.resolve_dtype("auto", cpu, convolutional=True) == "fp32", flags   # bf16 convs: unsafe on CPUs
        assert pipeline.resolve_dtype("bf16", cpu, convolutional=True) == "bf16"           # asked for: given
        monkeypatch.undo()
    with pytest.raises(ValueError, match="--dtype fp16"):
        pipeline.resolve_dtype("fp16", cpu)


def test_lr_warms_up_linearly_then_decays_to_the_floor():
    tc = micro_config(transformer_steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1).train
    lrs = [train_transformer_module.lr_at(step, tc) for step in range(100)]
    assert lrs[:10] == pytest.approx([1e-4 * (i + 1) for i in range(10)])      # linear warm-up to the peak
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))                         # then never increases
    assert lrs[-1] == pytest.approx(1e-4, rel=1e-2)                               # ends at lr * min_lr_ratio


def test_tokenizer_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = micro_config(eval_every=10)                       # no periodic checkpoint: only the SIGTERM one
    straight = train_tokenizer(cfg, str(tmp_path / "a")).state_dict()

    signal_at(train_tokenizer_module, "random_clips", 1, monkeypatch)   # SIGTERM during step 2
    with pytest.raises(Stopped, match="step 2"):
        train_tokenizer(cfg, str(tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b" / "tokenizer.pt", "tokenizer")["step"] == 2
    monkeypatch.undo()
    resumed = train_tokenizer(cfg, str(tmp_path / "b"), resume=True)
    assert load_checkpoint(tmp_path / "b" / "tokenizer.pt", "tokenizer")["step"] == 4
    assert_same_weights(straight, resumed.state_dict())     # EMA codebook buffers included


def test_transformer_resume_after_sigterm_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = micro_config()
    train_tokenizer(cfg, str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "tokenizer.pt", tmp_path / "b" / "tokenizer.pt")
    straight = train_transformer(cfg, str(tmp_path / "a")).state_dict()

    signal_at(train_transformer_module, "lr_at", 3, monkeypatch)       # SIGTERM during step 4 (of 6)
    with pytest.raises(Stopped, match="step 4"):
        train_transformer(cfg, str(tmp_path / "b"))
    assert load_checkpoint(tmp_path / "b" / "mebt.pt", "mebt")["step"] == 4
    monkeypatch.undo()
    resumed = train_transformer(cfg, str(tmp_path / "b"), resume=True)
    payload = load_checkpoint(tmp_path / "b" / "mebt.pt", "mebt")
    saved = Config.from_dict(payload["config"])   # the config as given, plus the background code training found
    assert payload["step"] == 6 and saved == dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, sample_background_code=saved.train.sample_background_code))
    assert_same_weights(straight, resumed.state_dict())
    # the same curriculum, masks and LR schedule: the logged losses agree too, and eval lines are there
    logs = [[json.loads(line) for line in open(tmp_path / run / "metrics.jsonl")] for run in "ab"]
    evals = [[(r["step"], round(r["eval_ce"], 5)) for r in log if "eval_ce" in r] for log in logs]
    assert [step for step, _ in evals[0]] == [3, 6] and evals[1] == evals[0]
    assert os.path.exists(tmp_path / "b" / "samples" / "final.gif")


def test_keep_every_keeps_each_snapshot_as_the_run_was_at_that_step(tmp_path):
    cfg = micro_config()   # 6 steps, an evaluation (and mebt.pt) every 3
    train_tokenizer(cfg, str(tmp_path))
    final = train_transformer(cfg, str(tmp_path), keep_every=2).state_dict()
    kept = sorted(name for name in os.listdir(tmp_path) if name.startswith("mebt_step"))
    assert kept == ["mebt_step2.pt", "mebt_step4.pt", "mebt_step6.pt"]   # at 2 and 4 no evaluation saved mebt.pt
    snapshots = {step: load_checkpoint(tmp_path / f"mebt_step{step}.pt", "mebt") for step in (2, 4, 6)}
    assert [snapshots[step]["step"] for step in (2, 4, 6)] == [2, 4, 6]
    assert_same_weights(snapshots[6]["model"], final)   # the last one is the run's end
    assert not torch.equal(snapshots[2]["model"]["head.weight"], snapshots[4]["model"]["head.weight"])
    # each is a full checkpoint: resuming a copy of step 4 to the end gives the run's final weights
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copy(tmp_path / "tokenizer.pt", resumed_dir / "tokenizer.pt")
    shutil.copy(tmp_path / "mebt_step4.pt", resumed_dir / "mebt.pt")
    assert_same_weights(train_transformer(cfg, str(resumed_dir), resume=True).state_dict(), final)


def test_the_checkpoint_records_the_background_code_of_its_token_cache(tmp_path):
    from mebt.pipeline import RunPaths
    from mebt.token_cache import KIND, background_code
    cfg = micro_config()
    train_tokenizer(cfg, str(tmp_path))
    train_transformer(cfg, str(tmp_path))
    tokens = load_checkpoint(RunPaths(str(tmp_path)).cache("train"), KIND)["tokens"]
    saved = Config.from_dict(load_checkpoint(tmp_path / "mebt.pt", "mebt")["config"]).train
    assert saved.sample_background_code == background_code(tokens, cfg.model.vocab_size)
    flat = torch.zeros_like(tokens)                                   # one code everywhere: a flat background
    assert background_code(flat, cfg.model.vocab_size) == 0


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = micro_config(eval_every=2)                        # checkpoints at steps 2 and 4
    real_save, saves = torch.save, []

    def crash_on_second_save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) == 2:
            with open(f, "wb") as half:
                half.write(b"PK\x03\x04 half a zip")          # the start of a file, then the machine dies
            raise OSError("No space left on device")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(torch, "save", crash_on_second_save)
    with pytest.raises(OSError, match="No space"):
        train_tokenizer(cfg, str(tmp_path))
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "tokenizer.pt", "tokenizer")["step"] == 2   # the step-2 file, intact
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl", "tokenizer.pt"]         # no half-written leftovers
    train_tokenizer(cfg, str(tmp_path), resume=True)                                 # and it resumes from it
    assert load_checkpoint(tmp_path / "tokenizer.pt", "tokenizer")["step"] == 4


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "get_preset", lambda name: micro_config())
    real_loss, training_calls = train_transformer_module.masked_token_loss, []

    def nan_at_step_5(logits, targets):
        loss = real_loss(logits, targets)
        if torch.is_grad_enabled():                         # training steps only, not the held-out evaluation
            training_calls.append(1)
            if len(training_calls) == 5:
                return loss * float("nan")
        return loss
    monkeypatch.setattr(train_transformer_module, "masked_token_loss", nan_at_step_5)
    assert train.main(["--out-dir", str(tmp_path), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: transformer loss became nan at step 5") and "keeps step 3" in err
    payload = load_checkpoint(tmp_path / "mebt.pt", "mebt")
    assert payload["step"] == 3 and all(torch.isfinite(v).all() for v in payload["model"].values())


def test_resume_reuses_a_finished_tokenizer_and_extends_the_transformer(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "get_preset", lambda name: micro_config())
    args = ["--out-dir", str(tmp_path), "--device", "cpu", "--tokenizer-steps", "2", "--transformer-steps", "2"]
    assert train.main(args) == 0
    tokenizer_file = (tmp_path / "tokenizer.pt").read_bytes()
    capsys.readouterr()
    assert train.main(args + ["--resume", "--transformer-steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "tokenizer: reusing" in out and "token cache: loaded" in out and "steps 2->4" in out
    assert (tmp_path / "tokenizer.pt").read_bytes() == tokenizer_file           # untouched, not retrained
    assert load_checkpoint(tmp_path / "mebt.pt", "mebt")["step"] == 4


def _ddp_worker(rank: int, out_dir: str, cfg_dict: dict, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))                 # what torchrun sets
    torch.set_num_threads(1)
    dist = setup("cpu")
    cfg = Config.from_dict(cfg_dict)
    flags, batches = {}, []                                 # what DDP was asked for, and each step's batch

    def recording_wrap(module):
        real = module.wrap
        def wrap(model, d, **kwargs):
            wrapped = real(model, d, **kwargs)
            flags[module.__name__] = (wrapped.find_unused_parameters, wrapped.broadcast_buffers)
            return wrapped
        return wrap
    real_batch = train_transformer_module.training_batch
    def recording_batch(*args):
        batch = real_batch(*args)
        batches.append(batch)
        return batch
    train_tokenizer_module.wrap = recording_wrap(train_tokenizer_module)
    train_transformer_module.wrap = recording_wrap(train_transformer_module)
    train_transformer_module.training_batch = recording_batch
    tokenizer = train_tokenizer(cfg, out_dir, dist=dist)
    model = train_transformer(cfg, out_dir, dist=dist)
    torch.save({"tokenizer": tokenizer.state_dict(), "mebt": model.state_dict(), "flags": flags, "batches": batches},
               os.path.join(out_dir, f"rank{rank}.pt"))
    teardown(dist)


def test_two_process_ddp_ends_with_identical_weights_and_one_writer(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                           # a free port for the gloo rendezvous
    cfg = micro_config(tokenizer_steps=2, transformer_steps=3, eval_every=2)
    mp.spawn(_ddp_worker, args=(str(tmp_path), cfg.to_dict(), port), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert_same_weights(ranks[0]["tokenizer"], ranks[1]["tokenizer"])
    assert_same_weights(ranks[0]["mebt"], ranks[1]["mebt"])
    assert_same_weights(load_checkpoint(tmp_path / "mebt.pt", "mebt")["model"], ranks[0]["mebt"])
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    steps = [(r["stage"], r["step"]) for r in records if "eval_psnr" in r or "eval_ce" in r]
    assert steps == [("tokenizer", 2), ("transformer", 2), ("transformer", 3)]   # rank 0 alone logs: no duplicates
    for r in ranks:   # every parameter is used at every step; the quantizer keeps its own buffers in sync
        assert r["flags"] == {"mebt.train_tokenizer": (False, False), "mebt.train_transformer": (False, True)}
    for a, b in zip(*(r["batches"] for r in ranks)):   # one window length T per step, own clips and masks per rank
        assert a[1].shape[1] + a[2].shape[1] == b[1].shape[1] + b[2].shape[1]
        assert not torch.equal(a[1], b[1])                  # context positions: each rank drew its own split


# ------------------------------------------------------------------------------------------------ the CLI

def run_cli(*args, preset: Config | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    """train.py in a subprocess; `preset` replaces whatever --preset names (the real ones are too slow here)."""
    if preset is None:
        command = [sys.executable, os.path.join(ROOT, "train.py"), *map(str, args)]
    else:
        code = ("import sys, train; from mebt.config import Config; "
                f"train.get_preset = lambda name: Config.from_dict({preset.to_dict()!r}); sys.exit(train.main())")
        command = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=timeout)


def write_frame_folders(root, videos: int = 3, frames: int = 20, size: int = 16) -> None:
    """Real JPEG files in the flat layout <root>/<video>/<frame>.jpg: a bright bar sweeping over a gradient."""
    for v in range(videos):
        os.makedirs(root / f"video{v}")
        for t in range(frames):
            pixels = np.zeros((size, size, 3), np.uint8)
            pixels[..., 2] = np.linspace(40, 200, size, dtype=np.uint8)[None, :]
            pixels[:, (t + 3 * v) % size] = (250, 220, 30)
            Image.fromarray(pixels).save(root / f"video{v}" / f"frame_{t:05d}.jpg", quality=95)


@pytest.fixture(scope="module")
def cli_errors(tmp_path_factory):
    """Every error case, prepared, then all train.py processes at once (each spends its time importing torch)."""
    base = tmp_path_factory.mktemp("cli")
    (base / "empty").mkdir()
    mismatch = base / "mismatch"   # a tokenizer with 32 codes; the tiny transformer expects TINY_VOCAB
    tokenizer = VQTokenizer(micro_config().tokenizer)
    save_checkpoint(mismatch / "tokenizer.pt", {"kind": "tokenizer", "model": tokenizer.state_dict(), "step": 4,
                                                "config": micro_config().to_dict()})
    (base / "corrupt").mkdir()
    (base / "corrupt" / "tokenizer.pt").write_bytes(b"this is not a checkpoint")
    (base / "existing").mkdir()
    (base / "existing" / "tokenizer.pt").write_bytes(b"a finished tokenizer")
    os.utime(base / "existing" / "tokenizer.pt", (1_000_000_000, 1_000_000_000))
    cases = {
        "no_data_dir": ["--dataset", "skytimelapse"],
        "missing_data_dir": ["--dataset", "skytimelapse", "--data-dir", base / "nowhere", "--out-dir", base / "o1"],
        "empty_data_dir": ["--dataset", "skytimelapse", "--data-dir", base / "empty", "--out-dir", base / "o2"],
        "no_tokenizer": ["--stage", "transformer", "--out-dir", base / "o3"],
        "mismatch": ["--stage", "transformer", "--out-dir", mismatch],
        "corrupt": ["--stage", "transformer", "--out-dir", base / "corrupt"],
        "existing": ["--out-dir", base / "existing"],
        "keep_every": ["--keep-every", "-5", "--out-dir", base / "o4"],
    }
    running = {name: subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--device", "cpu",
                                       *map(str, args)], cwd=ROOT, env=SUBPROCESS_ENV, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for name, args in cases.items()}
    results = {name: (p.wait(timeout=120), *p.communicate()) for name, p in running.items()}
    return base, results


TINY_VOCAB = get_preset("tiny").model.vocab_size   # what the default (tiny) transformer config expects


@pytest.mark.parametrize("case, expected", [
    ("no_data_dir", "error: --dataset skytimelapse needs --data-dir PATH"),
    ("missing_data_dir", "nowhere: no such file or folder"),
    ("empty_data_dir", "empty: no .jpg/.jpeg/.png frames found"),
    ("no_tokenizer", "o3/tokenizer.pt: run --stage tokenizer first"),
    ("mismatch", f"does not match the transformer config: codebook_size=32 (config wants {TINY_VOCAB})"),
    ("corrupt", "tokenizer.pt is not a readable checkpoint (corrupt or truncated?)"),
    ("existing", "existing/tokenizer.pt exists: pass --resume to continue it, or choose another --out-dir"),
    ("keep_every", "--keep-every=-5: expected 0 (keep no snapshots) or a positive number of steps"),
])
def test_cli_errors_are_one_line(cli_errors, case, expected):
    _, results = cli_errors
    returncode, _, stderr = results[case]
    assert returncode == 1
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and expected in stderr, stderr


def test_cli_never_overwrites_an_existing_run(cli_errors):
    base, _ = cli_errors
    existing = base / "existing" / "tokenizer.pt"
    assert existing.read_bytes() == b"a finished tokenizer" and os.stat(existing).st_mtime == 1_000_000_000
    assert os.listdir(base / "existing") == ["tokenizer.pt"]


def test_cli_end_to_end_on_a_folder_of_jpeg_frames(tmp_path):
    write_frame_folders(tmp_path / "sky")
    out = tmp_path / "out"
    result = run_cli("--dataset", "skytimelapse", "--data-dir", tmp_path / "sky", "--out-dir", out, "--device", "cpu",
                     "--tokenizer-steps", "2", "--transformer-steps", "2", "--eval-every", "1", "--sample-every", "1",
                     preset=micro_config())
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(out / "tokenizer.pt", "tokenizer")["step"] == 2
    payload = load_checkpoint(out / "mebt.pt", "mebt")
    assert payload["step"] == 2 and payload["config"]["data"]["dataset"] == "skytimelapse"
    assert payload["tokenizer"]["path"] == str(out / "tokenizer.pt")
    assert len(load_checkpoint(out / "tokens_train.pt", "token_cache")["tokens"]) == 3   # one 16-frame window per video
    records = [json.loads(line) for line in open(out / "metrics.jsonl")]
    assert [r["step"] for r in records if "eval_psnr" in r] == [1, 2]
    assert [r["step"] for r in records if "eval_ce" in r] == [1, 2]
    for name in ("step_1.gif", "step_2.gif", "final.gif", "final.png"):
        assert os.path.getsize(out / "samples" / name) > 0
    with Image.open(out / "samples" / "final.gif") as gif:
        assert gif.n_frames > 1                              # a video, not a still
    assert "tokenizer: 2 steps in" in result.stdout and "transformer: 2 steps in" in result.stdout


def test_frame_split_probability_sets_the_share_of_frame_shaped_batches():
    from mebt.curriculum import Curriculum
    cfg = micro_config()
    cache = torch.randint(cfg.model.vocab_size, (6, *cfg.model.grid))
    t, h, w = cfg.model.grid
    schedule = Curriculum(t, 1.0, enabled=False)

    def frame_shaped(prob):
        cfg.model.frame_split_prob = prob
        count = 0
        for step in range(200):
            _, context_pos, _, _ = train_transformer_module.training_batch(
                cache, step, schedule, cfg, step_generator(0, step, 0), shared_generator(0, step))
            frames = context_pos // (h * w)                                       # (B, Nc) each context token's frame
            whole = all((frames == f).sum(1).eq(h * w).all() for f in frames[0].unique())
            count += bool(whole and (frames == frames[:1]).all())                 # same whole frames in every sample
        return count
    assert frame_shaped(0.0) == 0                       # random token splits never hit whole frames by chance here
    assert frame_shaped(1.0) == 200
    assert 30 <= frame_shaped(0.25) <= 70               # about 50 of 200
    cfg.model.frame_split_prob = 1.5
    with pytest.raises(ValueError, match="frame_split_prob"):
        cfg.validate()


def test_frame_split_prob_zero_draws_nothing_extra_so_runs_reproduce_as_before():
    """At 0 the batch is exactly window + clips + random split from the step generator: no extra draw shifts it."""
    from mebt.curriculum import Curriculum
    from mebt.masking import sample_split
    cfg = micro_config()
    cfg.model.frame_split_prob = 0.0
    cache = torch.randint(cfg.model.vocab_size, (6, *cfg.model.grid), generator=torch.Generator().manual_seed(1))
    schedule = Curriculum(cfg.model.grid[0], 1.0, enabled=False)
    for step in range(5):
        generator = step_generator(0, step, 0)
        positions = schedule.sample_window(step, cfg.train.batch_size, tuple(cache.shape[1:]), generator)
        clips = torch.randint(len(cache), (cfg.train.batch_size,), generator=generator)
        tokens = cache[clips].long().flatten(1).gather(1, positions)
        context_slot, target_slot = sample_split(torch.arange(positions.shape[1]).expand_as(positions),
                                                 cfg.model.mask_schedule, generator)
        batch = train_transformer_module.training_batch(cache, step, schedule, cfg, step_generator(0, step, 0),
                                                        shared_generator(0, step))
        expected = (tokens.gather(1, context_slot), positions.gather(1, context_slot),
                    positions.gather(1, target_slot), tokens.gather(1, target_slot))
        assert all(torch.equal(a, b) for a, b in zip(batch, expected)), step


def test_frame_split_flag_is_off_by_default_and_written_into_the_config():
    assert train.build_config(train.parse_args([])).model.frame_split_prob == 0.0
    assert train.build_config(train.parse_args(["--frame-split-prob", "0.25"])).model.frame_split_prob == 0.25
    with pytest.raises(ValueError, match="frame_split_prob"):
        train.build_config(train.parse_args(["--frame-split-prob", "1.5"]))


def test_schedule_flags_move_the_curriculum_and_the_learning_rate_floor():
    from mebt.curriculum import Curriculum
    from mebt.train_transformer import lr_at
    preset = train.build_config(train.parse_args([])).train
    cfg = train.build_config(train.parse_args(["--curriculum-full-at", "0.3", "--min-lr-ratio", "1"])).train
    assert (preset.curriculum_full_at, preset.min_lr_ratio) == (0.65, 0.1)
    t_max, steps = 32, cfg.transformer_steps
    for tc in (preset, cfg):   # the most likely length is the full clip from full_at x steps on, not before
        schedule = Curriculum.from_total_steps(t_max, steps, full_at=tc.curriculum_full_at)
        reached = int(tc.curriculum_full_at * steps)
        assert schedule.probs(reached).argmax() == t_max - 1 and schedule.probs(reached // 2).argmax() < t_max - 1
    assert lr_at(steps - 1, cfg) == pytest.approx(cfg.lr) and lr_at(steps // 2, cfg) == pytest.approx(cfg.lr)
    assert lr_at(steps - 1, preset) == pytest.approx(preset.lr * 0.1, rel=1e-3)
    args = train.parse_args(["--curriculum-full-at", "0.3", "--no-curriculum"])
    with pytest.raises(ValueError, match="--no-curriculum"):
        train.check_args(args, train.build_config(args))
    for flag, value, field in (("--curriculum-full-at", "0", "curriculum_full_at"),
                               ("--min-lr-ratio", "1.5", "min_lr_ratio")):
        with pytest.raises(ValueError, match=field):
            train.build_config(train.parse_args([flag, value]))


def test_a_busy_cpu_gets_one_warning_before_the_first_step(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "get_preset", lambda name: micro_config())
    monkeypatch.setattr(cpu_load, "busy_cores", lambda cpus=None: 2.0)   # as if another job used every core
    monkeypatch.setattr(cpu_load, "usable_cpus", lambda: [0, 1])   # a 2-core machine, whatever this one has
    monkeypatch.setattr(cpu_load, "_checked", [])
    args = ["--out-dir", str(tmp_path), "--device", "cpu", "--tokenizer-steps", "2", "--transformer-steps", "2"]
    assert train.main(args) == 0
    err = capsys.readouterr().err
    assert err.count("warning: other processes are using 2.0") == 1        # once, though two stages ran
    assert err.index("warning: other processes") < err.index("tokenizer:")  # before the first progress bar
