"""The two baselines `bench.py quality` measures MeBT against, trained on the MeBT run's own tokens.

    sliding window   the MeBT class with a grid of one 16-frame window, (4, h, w) latent frames, trained on random
                     windows of the 128-frame token cache (mebt/train_transformer.py re-indexes each window from
                     frame 0), no curriculum; it extends a video a few latent frames at a time (benchmarks/tasks.py)
    autoregressive   TATS-style GPT over the same (4, h, w) windows, next-token loss (mebt/train_autoregressive.py);
                     it extends a video with a sliding window, token by token (mebt.baselines.generate_long)

Both train for as many steps as the MeBT checkpoint (or --baseline-steps), with its config otherwise (batch, learning
rate, schedule), in <checkpoint folder>/<name>-<steps>steps/: a copy of the MeBT run's tokenizer and token caches
(so the tokens are the very same), resumed if interrupted, reused by the next run. A baseline trained on other
tokenizer weights is refused.
"""
from __future__ import annotations

import dataclasses
import os
import shutil

import torch

from mebt.baselines import AutoregressiveBaseline
from mebt.checkpoint import fingerprint, load_checkpoint
from mebt.config import Config
from mebt.consistency import WINDOW
from mebt.distributed import Dist
from mebt.pipeline import RunPaths, load_mebt
from mebt.train_autoregressive import CHECKPOINT as AR_CHECKPOINT
from mebt.train_autoregressive import KIND as AR_KIND
from mebt.train_autoregressive import train_autoregressive
from mebt.train_transformer import train_transformer


def window_config(cfg: Config, steps: int) -> Config:
    """cfg with a model of one WINDOW-frame window, trained for `steps` steps without the length curriculum."""
    _, h, w = cfg.model.grid
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, grid=(WINDOW // cfg.tokenizer.temporal_downsample, h, w)),
        train=dataclasses.replace(cfg.train, transformer_steps=steps, curriculum=False)).validate()


def run_folder(ckpt: str, name: str, steps: int, tokenizer_fp: str) -> str:
    """<checkpoint folder>/<name>-<steps>steps/ holding the MeBT run's tokenizer and token caches (copied once).
    The step count is in the name: a short --quick baseline never continues into, or stands in for, a full one."""
    source, folder = RunPaths(os.path.dirname(os.path.abspath(ckpt))), RunPaths(
        os.path.join(os.path.dirname(os.path.abspath(ckpt)), f"{name}-{steps}steps"))
    if not os.path.isfile(source.tokenizer):
        raise FileNotFoundError(f"{ckpt}: the baselines train on the tokenizer.pt beside it, which is missing")
    os.makedirs(folder.out_dir, exist_ok=True)
    for src, dst in ((source.tokenizer, folder.tokenizer), (source.cache("train"), folder.cache("train")),
                     (source.cache("eval"), folder.cache("eval"))):
        if os.path.isfile(src) and not os.path.exists(dst):   # a missing cache is rebuilt by the training loop
            shutil.copy(src, dst + ".tmp")
            os.replace(dst + ".tmp", dst)                    # never a half-copied file under the real name
    if fingerprint(load_checkpoint(folder.tokenizer, "tokenizer")["model"]) != tokenizer_fp:
        raise ValueError(f"{folder.out_dir} holds a tokenizer of other weights than the one {ckpt} was trained on: "
                         "delete the folder and run again to retrain the baseline")
    return folder.out_dir


def check_tokens(path: str, payload: dict, tokenizer_fp: str, ckpt: str) -> None:
    if payload["tokenizer"]["fingerprint"] != tokenizer_fp:
        raise ValueError(f"baseline {path} was trained on other tokenizer weights than {ckpt}: delete its folder "
                         "and run again to retrain it")


def sliding_window_model(ckpt: str, cfg: Config, tokenizer_fp: str, steps: int, device: torch.device):
    """-> (the trained window model in eval mode, its checkpoint path, its steps)."""
    folder = run_folder(ckpt, "sliding-window", steps, tokenizer_fp)
    path = RunPaths(folder).mebt
    if not os.path.exists(path) or load_checkpoint(path, "mebt")["step"] < steps:
        print(f"quality: training the sliding-window baseline for {steps} steps in {folder} (reused next time)")
        train_transformer(window_config(cfg, steps), folder, resume=True, dist=Dist(device=device))
    model, _, payload = load_mebt(path, device)
    check_tokens(path, payload, tokenizer_fp, ckpt)
    return model, path, payload["step"]


def autoregressive_model(ckpt: str, cfg: Config, tokenizer_fp: str, steps: int, device: torch.device):
    """-> (the trained autoregressive model in eval mode, its checkpoint path, its steps)."""
    folder = run_folder(ckpt, "autoregressive", steps, tokenizer_fp)
    path = os.path.join(folder, AR_CHECKPOINT)
    window = window_config(cfg, steps)
    if not os.path.exists(path) or load_checkpoint(path, AR_KIND)["step"] < steps:
        print(f"quality: training the autoregressive baseline for {steps} steps in {folder} (reused next time)")
        train_autoregressive(window, folder, dist=Dist(device=device))
    payload = load_checkpoint(path, AR_KIND)
    check_tokens(path, payload, tokenizer_fp, ckpt)
    model = AutoregressiveBaseline(Config.from_dict(payload["config"]).model)
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), path, payload["step"]
