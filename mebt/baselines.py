"""The two baselines MeBT is measured against, built from the same Block and embeddings.

FullAttentionBaseline: the same masked (bidirectional) task and forward signature as MeBT, but
    every layer is self-attention over [context ; targets]: O(N^2) memory and compute. Its depth
    is MeBT's (len(encoder_layers) + len(decoder_layers)).
AutoregressiveBaseline: a TATS-style GPT over the flattened (t, h, w) token sequence with a
    learned [START] vector, causal attention, same width and depth. generate() decodes one token
    per network call with a key/value cache.

Try it:
    python -c "from mebt.config import ModelConfig; from mebt.baselines import AutoregressiveBaseline as A; print(A(ModelConfig()).generate(2, 10).shape)"
"""
from __future__ import annotations

import torch
import torch.nn as nn

from mebt.attention import Block
from mebt.config import ModelConfig
from mebt.model import PositionalEmbedding, SplitEmbedding, check_split, init_weights


def make_blocks(cfg: ModelConfig, materialize: bool) -> nn.ModuleList:
    depth = len(cfg.encoder_layers) + len(cfg.decoder_layers)   # as deep as MeBT
    return nn.ModuleList(Block(cfg.d_model, cfg.n_heads, cfg.mlp_ratio, cfg.dropout, materialize)
                         for _ in range(depth))


class FullAttentionBaseline(nn.Module):
    def __init__(self, cfg: ModelConfig, materialize: bool = False):
        super().__init__()
        self.cfg = cfg
        self.embed = SplitEmbedding(cfg)
        self.blocks = make_blocks(cfg, materialize)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        init_weights(self)

    def forward(self, context_tokens: torch.Tensor, context_pos: torch.Tensor,
                target_pos: torch.Tensor) -> torch.Tensor:
        """Same contract as MeBT.forward: -> logits (B, Nm, V)."""
        check_split(context_tokens, context_pos, target_pos, self.cfg)
        context, targets = self.embed(context_tokens, context_pos, target_pos)
        x = torch.cat([context, targets], dim=1)            # (B, Nc + Nm, d): everyone sees everyone
        for block in self.blocks:
            x = block(x, x)
        return self.head(self.ln_f(x[:, context.shape[1]:]))   # (B, Nm, V): target rows only

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class AutoregressiveBaseline(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.token = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.start = nn.Parameter(torch.zeros(cfg.d_model))   # (d,) input of the first slot
        self.position = PositionalEmbedding(cfg.grid, cfg.d_model)
        self.blocks = make_blocks(cfg, materialize=False)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size)
        init_weights(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, N) in raster order -> logits (B, N, V); logits[:, i] predicts tokens[:, i] from tokens[:, :i]."""
        B, N = tokens.shape
        if not 1 <= N <= self.cfg.n_positions:
            raise ValueError(f"AutoregressiveBaseline.forward: tokens length {N} must be in [1, {self.cfg.n_positions}]")
        # slot i holds the previous token ([START] for i = 0) plus the position of the token it predicts
        inputs = torch.cat([self.start.expand(B, 1, -1), self.token(tokens[:, :-1])], dim=1)   # (B, N, d)
        x = inputs + self.position(torch.arange(N, device=tokens.device).expand(B, N))
        for block in self.blocks:
            x = block(x, x, is_causal=True)
        return self.head(self.ln_f(x))                                                      # (B, N, V)

    def step(self, tokens: torch.Tensor, caches: list[dict]) -> torch.Tensor:
        """tokens (B, i) sampled so far -> logits (B, V) for token i, feeding only the newest token.

        caches: one dict per block, filled in place; pass the same list for i = 0, 1, 2, ...
        """
        B, i = tokens.shape
        x = self.start.expand(B, 1, -1) if i == 0 else self.token(tokens[:, -1:])   # (B, 1, d)
        x = x + self.position(torch.full((B, 1), i, device=tokens.device))
        for block, cache in zip(self.blocks, caches):
            x = block(x, x, cache=cache)   # one query that may see every cached key: no causal mask needed
        return self.head(self.ln_f(x))[:, 0]                                        # (B, V)

    @torch.no_grad()
    def generate(self, batch_size: int, n_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample (batch_size, n_tokens) tokens in raster order, one network call per token (call .eval() first)."""
        if not 1 <= n_tokens <= self.cfg.n_positions:
            raise ValueError(f"generate: n_tokens={n_tokens} must be in [1, {self.cfg.n_positions}]")
        if temperature <= 0:
            raise ValueError(f"generate: temperature={temperature} must be > 0")
        caches = [{} for _ in self.blocks]
        tokens = torch.zeros(batch_size, 0, dtype=torch.long, device=self.start.device)   # (B, 0)
        for _ in range(n_tokens):
            logits = self.step(tokens, caches) / temperature                               # (B, V)
            if top_k is not None:   # keep the k most likely codes
                kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]     # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            sampled = torch.multinomial(logits.softmax(-1), 1, generator=generator)        # (B, 1)
            tokens = torch.cat([tokens, sampled], dim=1)
        return tokens

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
