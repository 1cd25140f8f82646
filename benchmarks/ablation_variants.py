"""The variants of `bench.py ablations`: what each changes against the tiny preset, the one model that is not a
config option (a context updated by the latents), and the exact FLOP count of a training step of each.

    base               the tiny preset: L = 64 latents (32 until 2026-12-07, when docs/ablations.md was measured),
                       curriculum, read/write decoder, frozen context, uniform ratio
    base seed 1        the same with another seed: how far two identical runs land apart (the noise floor)
    L=8, L=128         fewer / more latents (the bottleneck's width)
    no curriculum      full-length clips from the first step
    no write           a read-only decoder (5 read layers, as many blocks as the base decoder's read/write stack)
    context updated    before every cross layer but the first the context reads the latents back (context <-
                       latents), so it is updated instead of frozen (a subclass here, not a config option)
    cosine ratio       mask ratios drawn as cos(pi/2 u) (MaskGIT) instead of uniform

Try it (counts only, on the meta device):
    python -c "from benchmarks.ablation_variants import *; from mebt.config import get_preset; \
cfg, _ = variant_config('context updated', get_preset('tiny')); print(step_flops('context updated', cfg)(8, 1024, 1024))"
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn as nn

from mebt.attention import Block
from mebt.config import Config
from mebt.encoder import LatentEncoder
from mebt.masking import num_masked
from mebt.model import MeBT, init_weights
from mebt.profiling import count_train_step, masked_batch


class ContextUpdatingEncoder(LatentEncoder):
    """Ablation only: before every cross layer but the first, the context attends to the latents and is updated
    (context <- latents, one more block each), so later cross layers read a context that has seen the whole clip.
    MeBT's own encoder never writes the context; this measures what that choice saves and costs."""

    def __init__(self, cfg):
        super().__init__(cfg)
        n_updates = max(self.kinds.count("cross") - 1, 0)   # an update after the last cross layer is never read
        self.context_layers = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(n_updates))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context (B, Nc, d) -> latents (B, L, d); the context is rewritten between cross layers."""
        latents = self.latents.expand(context.shape[0], -1, -1)   # (B, L, d)
        crosses = 0
        for kind, layer in zip(self.kinds, self.layers):
            if kind == "cross":
                if crosses > 0:
                    context = self.context_layers[crosses - 1](context, latents)   # (B, Nc, d): O(Nc * L)
                crosses += 1
            latents = layer(latents, latents if kind == "self" else context)
        return latents


class ContextUpdatingMeBT(MeBT):
    """MeBT with ContextUpdatingEncoder, initialised exactly as MeBT initialises its own encoder."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.encoder = ContextUpdatingEncoder(cfg)
        init_weights(self.encoder)
        nn.init.normal_(self.encoder.latents, std=1.0)   # as MeBT: latents start far apart


def variant_config(name: str, base: Config) -> tuple[Config, int]:
    """(the config a variant trains with, its training seed)."""
    m, t = base.model, base.train
    changes = {
        "base": {}, "base seed 1": {}, "context updated": {},
        "L=8": dict(model=dataclasses.replace(m, n_latents=8)),
        "L=128": dict(model=dataclasses.replace(m, n_latents=128)),
        "no curriculum": dict(train=dataclasses.replace(t, curriculum=False)),
        "no write": dict(model=dataclasses.replace(m, decoder_layers=("read",) * len(m.decoder_layers))),
        "cosine ratio": dict(model=dataclasses.replace(m, mask_schedule="cosine")),
    }[name]
    return dataclasses.replace(base, **changes).validate(), 1 if name == "base seed 1" else 0


VARIANTS = ("base", "base seed 1", "L=8", "L=128", "no curriculum", "no write", "context updated",
            "cosine ratio")


def build_model(name: str, cfg: Config) -> MeBT:
    return ContextUpdatingMeBT(cfg.model) if name == "context updated" else MeBT(cfg.model)


def step_flops(name: str, cfg: Config):
    """flops(batch, n_context, n_targets) of one training step (forward + backward), exact.

    Every matmul and attention kernel of MeBT costs a fixed amount per context token, per target token, or per
    sample (the latents' own layers), so the count is batch * (a + b * Nc + c * Nm) whenever Nc > 0. Three counts
    on the meta device give a, b and c."""
    with torch.device("meta"):
        model = build_model(name, cfg)
    _, h, w = cfg.model.grid
    points = [(8, 0.5), (8, 0.25), (4, 0.5)]   # (latent frames, ratio) -> (Nc, Nm) = (256, 256), (384, 128), (128, 128)
    rows, counts = [], []
    for frames, ratio in points:
        n = frames * h * w
        n_masked = num_masked(ratio, n)   # the split masked_batch draws
        rows.append([1.0, n - n_masked, n_masked])
        counts.append(count_train_step(model, masked_batch(cfg.model, frames, 1, ratio), torch.device("meta"))["flops"])
    a, b, c = np.linalg.solve(np.array(rows), np.array(counts, dtype=np.float64))
    return lambda batch, n_context, n_targets: batch * (a + b * n_context + c * n_targets)
