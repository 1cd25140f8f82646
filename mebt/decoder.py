"""MeBT's linear decoder: masked targets read from the latents, the latents read back from them.

Layer kinds come from ModelConfig.decoder_layers (why write layers: docs/architecture.md):
    "read" : targets <- latents                     (query targets, keys/values latents)  O(Nm * L)
    "write": latents <- concat(latents, targets)    (query latents)                       O(L * (L + Nm))
Targets never attend to one another; they only meet through the L latents. That keeps the cost
linear in the number of masked tokens instead of quadratic.

Try it:
    python -c "import torch; from mebt.config import ModelConfig; from mebt.decoder import LinearDecoder; print(LinearDecoder(ModelConfig())(torch.randn(2, 32, 128), torch.randn(2, 100, 128)).shape)"
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mebt.attention import Block
from mebt.config import ModelConfig


class LinearDecoder(nn.Module):
    def __init__(self, cfg: ModelConfig, materialize: bool = False):
        super().__init__()
        self.kinds = tuple(cfg.decoder_layers)
        self.layers = nn.ModuleList(
            Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, materialize) for _ in self.kinds)

    def forward(self, latents: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """latents (B, L, d), targets (B, Nm, d) -> updated targets (B, Nm, d)."""
        for kind, layer in zip(self.kinds, self.layers):
            if kind == "read":
                targets = layer(targets, latents)
            else:   # "write": the latents gather what the targets have learned so far
                latents = layer(latents, torch.cat([latents, targets], dim=1))   # kv (B, L + Nm, d)
        return targets
