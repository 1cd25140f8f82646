"""MeBT's encoder: squeeze any number of context tokens into L learned latent vectors.

Layer kinds come from ModelConfig.encoder_layers (why the context is frozen: docs/architecture.md):
    "cross": latents <- context   (query latents, keys/values context)   cost O(L * Nc)
    "self" : latents <- latents                                            cost O(L^2)
The context embeddings are never updated: every cross layer reads the same C, so the encoder's
cost and activation memory are linear in the number of visible tokens.

Try it:
    python -c "import torch; from mebt.config import ModelConfig; from mebt.encoder import LatentEncoder; print(LatentEncoder(ModelConfig())(torch.randn(2, 100, 128)).shape)"
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mebt.attention import Block
from mebt.config import ModelConfig


class LatentEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig, materialize: bool = False):
        super().__init__()
        self.latents = nn.Parameter(torch.zeros(cfg.n_latents, cfg.d_model))   # (L, d); MeBT re-initialises it
        self.kinds = tuple(cfg.encoder_layers)
        self.layers = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, materialize) for _ in self.kinds)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """context (B, Nc, d) embeddings of the visible tokens -> latents (B, L, d).

        Training always leaves Nc >= 1 (mebt.masking). Decoding starts from Nc = 0: a cross layer then reads
        nothing (attention over no keys is 0 in every backend: CUDA's fused kernels refuse empty keys and fall
        back to the math path) and only its projection bias and MLP act. No branch on Nc: the same layers run
        for every split, so DDP sees every parameter used and torch.compile one graph for every Nc."""
        latents = self.latents.expand(context.shape[0], -1, -1)   # (B, L, d): same start for every sample
        for kind, layer in zip(self.kinds, self.layers):
            latents = layer(latents, latents if kind == "self" else context)
        return latents
