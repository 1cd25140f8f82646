"""Glue shared by train.py, sample.py, bench.py and the notebook: where a run's files live, loading the
two checkpoints (and checking they belong together), the metrics log, and turning noise into videos.

    from mebt.pipeline import load_mebt, load_tokenizer_for, generate_videos, sampling_settings
    model, cfg, payload = load_mebt("out/mebt.pt", "cpu")
    tokenizer, _, _ = load_tokenizer_for(payload, "out/mebt.pt", "cpu")   # the tokenizer it was trained on
    settings = sampling_settings(cfg.train, model.cfg.n_positions)       # the checkpoint's decoding settings
    videos = generate_videos(model, tokenizer, num_samples=2, **settings)  # (2, 3, 128, 32, 32) in [-1, 1]

Try it (after `python train.py`):
    python -c "from mebt.pipeline import *; m, c, p = load_mebt('out/mebt.pt', 'cpu'); \
t, _, _ = load_tokenizer_for(p, 'out/mebt.pt', 'cpu'); \
print(generate_videos(m, t, 1, frames=16, **sampling_settings(c.train, 256)).shape)"
"""
from __future__ import annotations

import contextlib
import json
import os
import time

import torch

from mebt.checkpoint import fingerprint, load_checkpoint
from mebt.config import Config, TrainConfig
from mebt.decoding import decode
from mebt.model import MeBT
from mebt.tokenizer import VQTokenizer


class RunPaths:
    """Every file a training run writes, under one --out-dir."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.tokenizer = os.path.join(out_dir, "tokenizer.pt")
        self.mebt = os.path.join(out_dir, "mebt.pt")
        self.metrics = os.path.join(out_dir, "metrics.jsonl")
        self.samples = os.path.join(out_dir, "samples")

    def cache(self, split: str) -> str:
        return os.path.join(self.out_dir, f"tokens_{split}.pt")   # the split's clips, encoded once


class LossNotFinite(RuntimeError):
    """The training loss became NaN/inf; nothing was saved after the last good checkpoint."""


def refuse_overwrite(path: str, resume: bool) -> None:
    """A finished or half-finished run is never silently overwritten."""
    if os.path.exists(path) and not resume:
        raise FileExistsError(f"{path} exists: pass --resume to continue it, or choose another --out-dir")


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 in hardware: CUDA GPUs from Ampere on, and CPUs whose flags (Linux
    /proc/cpuinfo) include avx512_bf16 or amx_bf16. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:   # not Linux: no cheap way to ask, and fp32 is never the slow choice there
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(dtype: str, device: torch.device, convolutional: bool = False) -> str:
    """--dtype auto -> "bf16" where the device multiplies bfloat16 natively (see native_bf16), else "fp32";
    fp32/bf16 as given. `convolutional` (the tokenizer): auto stays fp32 on a CPU, because bf16 convolutions on
    CPUs are not safe: on our AMD EPYC (AVX-512 BF16) a Conv3d of a small test tokenizer returned non-finite
    outputs from finite inputs in about 1 of 100 forward passes (tests/test_train.py failed at random), a class of
    oneDNN bf16 kernel bugs reported upstream for other shapes too. The transformer has no convolutions.
    Measured on that CPU (idle, 2 threads): a full-length tiny-preset transformer step 0.387 s fp32 vs 0.306 s
    bf16 (1.26x; `bench.py throughput --threads 2`: one shape), and 0.345 vs 0.273 s over 30 steps that each had a
    new context/target split, as in training (such loops vary by up to 1.5x from process to process). The
    transformer reached a lower held-out CE at equal steps in bf16 (0.977 vs 1.021 nats, one run each)."""
    if dtype not in ("auto", "fp32", "bf16"):
        raise ValueError(f"--dtype {dtype}: expected auto, fp32 or bf16")
    if dtype != "auto":
        return dtype
    if convolutional and device.type == "cpu":
        return "fp32"
    return "bf16" if native_bf16(device) else "fp32"


def autocast(device: torch.device, dtype: str):
    """bf16 autocast on CUDA or CPU (matmuls and attention in bf16; weights, optimiser state and the loss stay
    fp32, see masked_token_loss); fp32 is a no-op."""
    if dtype == "bf16":
        if device.type not in ("cuda", "cpu"):
            raise ValueError(f"--dtype bf16 runs on cuda or cpu, not {device.type}; use --dtype fp32")
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class MetricsLog:
    """Appends one JSON object per line to OUT/metrics.jsonl (rank 0 only), e.g.
    {"stage": "transformer", "step": 250, "loss": 4.1, "lr": 0.001, "T": 9, "tokens_per_s": 5200.0}."""

    def __init__(self, path: str, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if enabled:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def write(self, **record) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a") as f:   # append: a resumed run continues the same log
            f.write(json.dumps(record) + "\n")


# ------------------------------------------------------------------------------------------------ loading

def _load_weights(module: torch.nn.Module, state: dict, path: str) -> None:
    try:
        module.load_state_dict(state)
    except RuntimeError as e:   # torch lists every missing/unexpected key over many lines
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path}: the weights do not fit the config stored with them ({first})") from None


def load_tokenizer(path: str, device) -> tuple[VQTokenizer, Config, str]:
    """-> (tokenizer in eval mode on `device`, the Config it was trained with, its weights' fingerprint)."""
    payload = load_checkpoint(path, "tokenizer")
    cfg = Config.from_dict(payload["config"])
    tokenizer = VQTokenizer(cfg.tokenizer)
    _load_weights(tokenizer, payload["model"], path)
    return tokenizer.to(device).eval(), cfg, fingerprint(payload["model"])


def check_tokenizer_matches(tokenizer_cfg, cfg: Config, path: str) -> None:
    """The transformer's vocabulary and token grid only make sense for the tokenizer they were sized for."""
    want = {"codebook_size": cfg.tokenizer.codebook_size, "temporal_downsample": cfg.tokenizer.temporal_downsample,
            "spatial_downsample": cfg.tokenizer.spatial_downsample}
    have = {k: getattr(tokenizer_cfg, k) for k in want}
    if have != want:
        diff = ", ".join(f"{k}={have[k]} (config wants {want[k]})" for k in want if have[k] != want[k])
        raise ValueError(f"the tokenizer at {path} does not match the transformer config: {diff}; "
                         "train a new tokenizer (--stage tokenizer in a fresh --out-dir) or use the matching --preset")


def load_mebt(path: str, device) -> tuple[MeBT, Config, dict]:
    """-> (MeBT in eval mode on `device`, its Config, the whole checkpoint payload)."""
    payload = load_checkpoint(path, "mebt")
    cfg = Config.from_dict(payload["config"])
    model = MeBT(cfg.model)
    _load_weights(model, payload["model"], path)
    return model.to(device).eval(), cfg, payload


def load_tokenizer_for(mebt_payload: dict, mebt_path: str, device) -> tuple[VQTokenizer, Config, str]:
    """The tokenizer a MeBT checkpoint was trained on: its recorded path, or a file of the same name beside
    the MeBT checkpoint (a run directory that was moved); its fingerprint must match the recorded one."""
    record = mebt_payload["tokenizer"]
    beside = os.path.join(os.path.dirname(os.path.abspath(mebt_path)), os.path.basename(record["path"]))
    path = record["path"] if os.path.isfile(record["path"]) else beside
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{mebt_path} was trained with the tokenizer {record['path']}, which is gone "
                                f"(also looked for {beside})")
    tokenizer, cfg, fp = load_tokenizer(path, device)
    if fp != record["fingerprint"]:
        raise ValueError(f"{path} has weights {fp} but {mebt_path} was trained on tokenizer weights "
                         f"{record['fingerprint']}: its tokens would mean something else")
    return tokenizer, cfg, fp


# ------------------------------------------------------------------------------------------------ sampling

def sampling_settings(tc: TrainConfig, unknown: int) -> dict:
    """The decoding settings a config stores (what train.py samples with), as keyword arguments of decode().

    unknown: the number of tokens left to generate; the bootstrap count is capped at it (short clips, primes)."""
    return dict(steps=tc.sample_steps, context_temperature=tc.sample_context_temperature,
                bootstrap=min(tc.sample_bootstrap, unknown), revise=tc.sample_revise,
                revise_temperature=tc.sample_revise_temperature,
                foreground_temperature=tc.sample_foreground_temperature,
                background_code=tc.sample_background_code if tc.sample_background_code >= 0 else None)


@torch.no_grad()
def generate_videos(model: torch.nn.Module, tokenizer: VQTokenizer, num_samples: int, frames: int | None = None,
                    given: torch.Tensor | None = None, **decode_kwargs) -> torch.Tensor:
    """Iterative masked decoding of token grids, then pixels: -> videos (B, 3, T, H, W) in [-1, 1].

    frames: video length (a multiple of the tokenizer's temporal factor, at most the model's); default: the
      model's full length. given: (B, t*h*w) known tokens, -1 = unknown (see mebt.decoding.decode).
    decode_kwargs: the decoding settings (**sampling_settings(cfg.train, n): steps, context_temperature,
      bootstrap, revise, revise_temperature), then temperature, top_k, generator, progress, ...
    """
    t_max, h, w = model.cfg.grid
    factor = tokenizer.cfg.temporal_downsample
    if frames is None:
        frames = t_max * factor
    if frames % factor or not 0 < frames <= t_max * factor:
        raise ValueError(f"frames={frames}: expected a multiple of {factor} in [{factor}, {t_max * factor}]")
    # the first t latent frames of the (t_max, h, w) grid have the same flat indices as a (t, h, w) grid
    tokens = decode(model, num_samples, (frames // factor, h, w), given=given, **decode_kwargs)   # (B, t, h, w)
    device = next(tokenizer.parameters()).device
    return tokenizer.decode(tokens.to(device))   # (B, 3, T, H, W)
