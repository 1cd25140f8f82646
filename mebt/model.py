"""MeBT: the memory-efficient bidirectional transformer (why it is built this way: docs/architecture.md).

Given the visible tokens (context: indices + positions) and the positions of the hidden ones
(targets), predict a distribution over the codebook for every target, all at once:

    context = token_embedding(index) + pos(position)       (B, Nc, d)  never updated
    targets = [MASK] + pos(position)                       (B, Nm, d)
    latents = LatentEncoder(context)                       (B, L, d)
    targets = LinearDecoder(latents, targets)              (B, Nm, d)
    logits  = Linear(LayerNorm(targets))                   (B, Nm, V)

Every cost is O((Nc + Nm) * L): linear in the video length. Positions are absolute flat indices
pos = (ti * h + hi) * w + wi into ModelConfig.grid = (t, h, w), embedded by a factorised table
(time + row + column, summed).

Try it:
    python -c "from mebt.config import get_preset; from mebt.model import MeBT; print(MeBT(get_preset('tiny').model).num_params())"
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mebt.attention import Attention
from mebt.config import ModelConfig
from mebt.decoder import LinearDecoder
from mebt.encoder import LatentEncoder


class PositionalEmbedding(nn.Module):
    """Factorised learned positions: time table (t, d) + row table (h, d) + column table (w, d)."""

    def __init__(self, grid: tuple[int, int, int], d_model: int):
        super().__init__()
        t, h, w = grid
        self.grid = (t, h, w)
        self.time = nn.Embedding(t, d_model)
        self.row = nn.Embedding(h, d_model)
        self.column = nn.Embedding(w, d_model)

    def forward(self, pos: torch.Tensor) -> torch.Tensor:
        """pos (B, N) flat indices (ti * h + hi) * w + wi -> (B, N, d)."""
        _, h, w = self.grid
        # ti = pos // (h*w); hi = (pos // w) % h; wi = pos % w  (the inverse of (ti * h + hi) * w + wi)
        return self.time(pos // (h * w)) + self.row(pos // w % h) + self.column(pos % w)


def check_indices(name: str, values: torch.Tensor, size: int, what: str) -> None:
    """One-line ValueError unless `values` are integers in [0, size): catches bad input before a CUDA device assert.

    Reads two numbers back from the device (a host sync): call it where data enters (the token cache, decode's
    given tokens), never inside a training step."""
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise ValueError(f"{name}: expected an integer tensor of {what}, got dtype {values.dtype}")
    if values.numel() == 0:
        return
    lo, hi = (int(v) for v in torch.aminmax(values))   # one pass, one host sync
    if lo < 0 or hi >= size:
        raise ValueError(f"{name}: {what} must lie in [0, {size}), got values in [{lo}, {hi}]")


def check_split(context_tokens: torch.Tensor, context_pos: torch.Tensor, target_pos: torch.Tensor,
                cfg: ModelConfig) -> None:
    """Shape and dtype checks shared by MeBT and the full-attention baseline (one-line ValueErrors).

    Only metadata is read, never values: no host sync, and no graph break under torch.compile. The values are
    checked once where they enter (check_indices): the token cache in training, `given` in decode."""
    if context_tokens.shape != context_pos.shape or context_pos.dim() != 2:
        raise ValueError(f"context_tokens {tuple(context_tokens.shape)} and context_pos {tuple(context_pos.shape)} "
                         "must both be (B, Nc)")
    if target_pos.dim() != 2 or target_pos.shape[0] != context_pos.shape[0]:
        raise ValueError(f"target_pos {tuple(target_pos.shape)} must be (B, Nm) with the context's B={context_pos.shape[0]}")
    for name, t in (("context_tokens", context_tokens), ("context_pos", context_pos), ("target_pos", target_pos)):
        if t.dtype not in (torch.int32, torch.int64):   # embedding tables take these two only
            raise ValueError(f"{name}: expected an int32/int64 tensor of indices, got dtype {t.dtype}")


class SplitEmbedding(nn.Module):
    """Embeds a (context, targets) split: visible tokens get their index, hidden ones a shared [MASK]."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.token = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.mask = nn.Parameter(torch.zeros(cfg.d_model))   # (d,) the one learned [MASK] vector
        self.position = PositionalEmbedding(cfg.grid, cfg.d_model)

    def forward(self, context_tokens, context_pos, target_pos):
        """(B, Nc) tokens, (B, Nc) positions, (B, Nm) positions -> context (B, Nc, d), targets (B, Nm, d)."""
        context = self.token(context_tokens) + self.position(context_pos)   # (B, Nc, d)
        targets = self.mask + self.position(target_pos)                     # (B, Nm, d)
        return context, targets


def init_weights(model: nn.Module) -> None:
    """nanoGPT initialisation: N(0, 0.02) for every weight, table and free vector; zero biases."""
    for module in model.modules():
        if isinstance(module, nn.LayerNorm):
            continue   # keep PyTorch's default: scale 1, shift 0
        for name, p in module.named_parameters(recurse=False):   # linears, embeddings, latents, [MASK]
            if name == "bias":
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, std=0.02)


def set_materialize(model: nn.Module, flag: bool) -> None:
    """Switch every attention layer of `model` between the fused kernel and explicit softmax(QK^T)V."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.materialize = flag


def optim_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on Linear weight matrices only (not biases, norms, embeddings, latents)."""
    decay = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    decay_ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in decay_ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def masked_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (B, Nm, V), targets (B, Nm) codebook indices -> mean cross-entropy over the targets, in float32.

    Under --dtype bf16 the logits arrive in bfloat16 (the loss is computed outside autocast); cross-entropy on them
    would be bfloat16 too, with ~3 significant digits. Upcast first: the loss and its gradient stay fp32."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


class MeBT(nn.Module):
    def __init__(self, cfg: ModelConfig, materialize: bool = False):
        super().__init__()
        self.cfg = cfg
        self.embed = SplitEmbedding(cfg)
        self.encoder = LatentEncoder(cfg, materialize)
        self.decoder = LinearDecoder(cfg, materialize)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        init_weights(self)
        # Latents start far apart (std 1, not 0.02). The first cross layer adds the same near-uniform average of
        # the context to every latent; from a tiny start they would all become that average and learn in lockstep.
        # Distinct starts let each latent pick its own part of the video early (one A/B run on the tiny preset's
        # tokens, 8-latent-frame windows: held-out CE 1.57 vs 1.66 nats after 800 steps).
        nn.init.normal_(self.encoder.latents, std=1.0)

    def forward(self, context_tokens: torch.Tensor, context_pos: torch.Tensor,
                target_pos: torch.Tensor) -> torch.Tensor:
        """context_tokens (B, Nc), context_pos (B, Nc), target_pos (B, Nm) -> logits (B, Nm, V)."""
        check_split(context_tokens, context_pos, target_pos, self.cfg)
        context, targets = self.embed(context_tokens, context_pos, target_pos)   # (B, Nc, d), (B, Nm, d)
        latents = self.encoder(context)                                          # (B, L, d)
        targets = self.decoder(latents, targets)                                 # (B, Nm, d)
        return self.head(self.ln_f(targets))                                     # (B, Nm, V)

    def set_materialize(self, flag: bool) -> None:
        set_materialize(self, flag)

    def optim_groups(self, weight_decay: float) -> list[dict]:
        return optim_groups(self, weight_decay)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
