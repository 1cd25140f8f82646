"""The one transformer block every MeBT layer is made of.

A pre-LayerNorm block whose queries and keys/values come from *separate* streams:

    x = query + Attention(LN_q(query), LN_kv(kv))
    x = x + MLP(LN(x))

MeBT's layers differ only in who is the query and who is the key/value (docs/architecture.md), so a
self-attention layer is simply `block(x, x)`. Attention runs through the fused
`F.scaled_dot_product_attention`; `materialize=True` computes softmax(QK^T / sqrt(e)) V with an
explicit (B, heads, Nq, Nk) score matrix instead, so tests and bench.py can show what the fused
kernel saves.

Try it:
    python -c "import torch; from mebt.attention import Block; b = Block(64, 4); print(b(torch.randn(2, 5, 64), torch.randn(2, 7, 64)).shape)"
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


def autocast_off(device: torch.device):
    """A context in which `device` computes in the tensors' own dtypes (the meta device has no autocast)."""
    return torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else contextlib.nullcontext()


class Attention(nn.Module):
    """Multi-head attention from a query stream to a key/value stream."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, materialize: bool = False):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"Attention: d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.dropout = dropout
        self.materialize = materialize
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)   # one matmul for keys and values
        self.proj = nn.Linear(d_model, d_model)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, kv: torch.Tensor, is_causal: bool = False,
                cache: dict | None = None) -> torch.Tensor:
        """query (B, Nq, d), kv (B, Nk, d) -> (B, Nq, d).

        is_causal: query i sees keys 0..i only (needs Nq == Nk; the autoregressive baseline).
        cache: a dict this layer owns during autoregressive decoding; the new keys/values are
        appended to the ones stored there, so each step projects only its own token.
        """
        q = rearrange(self.query(query), "b n (h e) -> b h n e", h=self.n_heads)             # (B, h, Nq, e)
        k, v = rearrange(self.key_value(kv), "b n (two h e) -> two b h n e", two=2, h=self.n_heads)  # (B, h, Nk, e) each
        if cache is not None:
            if "k" in cache:   # earlier tokens' keys/values were computed once, on their own step
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        p = self.dropout if self.training else 0.0
        if self.materialize:
            # Scores and softmax in at least fp32, also under bf16 autocast, as the fused kernel keeps them: scores
            # rounded to bf16 (3 digits) moved a trained MeBT's log-probabilities 10x further from fp32 (in KL).
            wide = torch.promote_types(q.dtype, torch.float32)                              # float64 stays float64
            with autocast_off(q.device):
                scores = q.to(wide) @ k.to(wide).transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, h, Nq, Nk)
                if is_causal:
                    future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).triu(1)
                    scores = scores.masked_fill(future, float("-inf"))
                weights = F.dropout(scores.softmax(dim=-1), p)                              # (B, h, Nq, Nk)
            out = weights.to(v.dtype) @ v                                                   # (B, h, Nq, e)
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=is_causal)  # (B, h, Nq, e)
        return self.resid_dropout(self.proj(rearrange(out, "b h n e -> b n (h e)")))


class Block(nn.Module):
    """query + Attn(LN_q(query), LN_kv(kv)), then x + MLP(LN(x))."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int = 4, dropout: float = 0.0,
                 materialize: bool = False):
        super().__init__()
        self.ln_q = nn.LayerNorm(d_model)
        self.ln_kv = nn.LayerNorm(d_model)   # its own norm: the kv stream can be a different kind of vector
        self.attn = Attention(d_model, n_heads, dropout, materialize)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model),
            nn.GELU(),
            nn.Linear(mlp_ratio * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, query: torch.Tensor, kv: torch.Tensor, is_causal: bool = False,
                cache: dict | None = None) -> torch.Tensor:
        """query (B, Nq, d), kv (B, Nk, d) -> updated query (B, Nq, d); kv is only read."""
        x = query + self.attn(self.ln_q(query), self.ln_kv(kv), is_causal, cache)  # (B, Nq, d)
        return x + self.mlp(self.ln_mlp(x))                                         # (B, Nq, d)
