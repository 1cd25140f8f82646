"""mebt/train_autoregressive.py: the loss falls, a stopped run resumes to the very weights of an uninterrupted one,
and a checkpoint of other tokenizer weights is refused.

    python -m pytest -q tests/test_train_autoregressive.py
"""
import json
import math
import os
import signal

import pytest
import torch

from mebt import train_autoregressive as tar
from mebt.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from mebt.config import Config, DataConfig, ModelConfig, TokenizerConfig, TrainConfig
from mebt.distributed import Stopped, rng_state
from mebt.tokenizer import VQTokenizer


def micro_config(steps=6) -> Config:
    """8-frame windows (grid (2, 4, 4)) of 32-frame, 16 px synthetic clips."""
    return Config(name="micro", data=DataConfig(resolution=16, frames=32, num_videos=8, num_eval_videos=2),
                  tokenizer=TokenizerConfig(channels=8, codebook_size=16, code_dim=8),
                  model=ModelConfig(vocab_size=16, grid=(2, 4, 4), d_model=32, n_heads=2, n_latents=8,
                                    encoder_layers=("cross", "self"), decoder_layers=("read",)),
                  train=TrainConfig(transformer_steps=steps, batch_size=4, warmup_steps=1, eval_every=3, lr=3e-3)
                  ).validate()


def run_folder(path, seed=0):
    """A folder holding a tokenizer.pt, as train_autoregressive expects."""
    os.makedirs(path, exist_ok=True)
    torch.manual_seed(seed)
    state = VQTokenizer(micro_config().tokenizer).state_dict()
    save_checkpoint(os.path.join(path, "tokenizer.pt"), {"kind": "tokenizer", "model": state, "rng": rng_state(),
                                                         "config": micro_config().to_dict(),
                                                         "fingerprint": fingerprint(state)})
    return str(path)


def test_loss_falls_and_a_stopped_run_resumes_exactly(tmp_path, monkeypatch):
    whole = tar.train_autoregressive(micro_config(), run_folder(tmp_path / "whole"))
    evals = [json.loads(line)["eval_ce"] for line in open(tmp_path / "whole" / "metrics.jsonl") if "eval_ce" in line]
    assert len(evals) == 2 and evals[1] < evals[0] < math.log(16)                    # steps 3 and 6: it learns

    real, calls = tar.lr_at, []

    def stop_at_step_3(step, tc):   # lr_at runs once per step: as if the job were stopped mid-run
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        calls.append(step)
        return real(step, tc)

    monkeypatch.setattr(tar, "lr_at", stop_at_step_3)
    folder = run_folder(tmp_path / "stopped")
    with pytest.raises(Stopped, match="run again to continue"):
        tar.train_autoregressive(micro_config(), folder)
    assert load_checkpoint(os.path.join(folder, tar.CHECKPOINT), tar.KIND)["step"] == 4   # saved where it stopped
    monkeypatch.setattr(tar, "lr_at", real)
    resumed = tar.train_autoregressive(micro_config(), folder)
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_other_tokenizer_weights_are_refused(tmp_path):
    folder = run_folder(tmp_path / "run")
    tar.train_autoregressive(micro_config(steps=2), folder)
    run_folder(tmp_path / "run", seed=1)                                             # the tokenizer is replaced
    with pytest.raises(ValueError, match="other tokenizer weights"):
        tar.train_autoregressive(micro_config(steps=4), folder)
