"""The two baselines MeBT is measured against, built from the same Block and embeddings.

FullAttentionBaseline: the same masked (bidirectional) task and forward signature as MeBT, but
    every layer is self-attention over [context ; targets]: O(N^2) memory and compute. Its depth
    is MeBT's (len(encoder_layers) + len(decoder_layers)).
AutoregressiveBaseline: a TATS-style GPT over the flattened (t, h, w) token sequence with a
    learned [START] vector, causal attention, same width and depth. Decoding feeds one token per
    network call into a preallocated key/value cache (KVCache): each call projects only its own
    token and attends to the cached ones, with no copy of the cache.
generate_long: a video longer than the model's window, as TATS does: a sliding window that keeps
    the last `carry` latent frames as a prefix, re-indexed to the window's start, and samples the
    next frames token by token.

Try it:
    python -c "from mebt.config import ModelConfig; from mebt.baselines import AutoregressiveBaseline as A; print(A(ModelConfig()).generate(2, 10).shape)"
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from mebt.attention import Block
from mebt.config import ModelConfig
from mebt.decoding import sharpen_foreground
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


class KVCache:
    """Keys and values of every block for up to n_positions slots, allocated once: (depth, B, heads, n, e) each.
    `length` slots are filled; reset() empties it for the next window without freeing anything."""

    def __init__(self, cfg: ModelConfig, batch_size: int, device, dtype=torch.float32):
        depth, e = len(cfg.encoder_layers) + len(cfg.decoder_layers), cfg.d_model // cfg.n_heads
        shape = (depth, batch_size, cfg.n_heads, cfg.n_positions, e)
        self.k, self.v = torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype)
        self.length = 0

    def reset(self) -> None:
        self.length = 0


def cached_block(block: Block, x: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 start: int) -> torch.Tensor:
    """Block.forward(x, x, is_causal=True) for the slots start..start+n-1 of a sequence whose earlier slots sit in
    the cache: x (B, n, d); their keys/values are written into k_cache/v_cache (B, heads, n_max, e) in place."""
    attn, n = block.attn, x.shape[1]
    end = start + n
    q = rearrange(attn.query(block.ln_q(x)), "b n (h e) -> b h n e", h=attn.n_heads)             # (B, h, n, e)
    k, v = rearrange(attn.key_value(block.ln_kv(x)), "b n (two h e) -> two b h n e", two=2, h=attn.n_heads)
    k_cache[:, :, start:end], v_cache[:, :, start:end] = k, v
    # slot start+i sees slots 0..start+i; a single new slot sees the whole cache, no mask needed
    mask = None if n == 1 else torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)   # (n, end)
    out = F.scaled_dot_product_attention(q, k_cache[:, :, :end], v_cache[:, :, :end], attn_mask=mask)
    x = x + attn.proj(rearrange(out, "b h n e -> b n (h e)"))                                    # eval: no dropout
    return x + block.mlp(block.ln_mlp(x))


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

    def forward(self, tokens: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Slot i holds the previous token ([START] for i = 0) plus the position of the token it predicts.

        Without a cache (training): tokens (B, N) in raster order -> logits (B, N, V); logits[:, i] predicts
        tokens[:, i] from tokens[:, :i].
        With a cache (decoding): tokens (B, n) are the next n inputs after the cache.length slots already fed
        ([START] is fed first, by itself, while the cache is empty) -> logits (B, V) of the last new slot: the
        distribution of the next token. One call per sampled token; a prime goes in as one call."""
        B, n = tokens.shape
        if cache is None:
            if not 1 <= n <= self.cfg.n_positions:
                raise ValueError(f"AutoregressiveBaseline.forward: tokens length {n} must be in "
                                 f"[1, {self.cfg.n_positions}]")
            inputs = torch.cat([self.start.expand(B, 1, -1), self.token(tokens[:, :-1])], dim=1)   # (B, N, d)
            x = inputs + self.position(torch.arange(n, device=tokens.device).expand(B, n))
            for block in self.blocks:
                x = block(x, x, is_causal=True)
            return self.head(self.ln_f(x))                                                      # (B, N, V)
        first = cache.length
        x = self.token(tokens)                                                                  # (B, n, d)
        if first == 0:
            x = torch.cat([self.start.expand(B, 1, -1), x], dim=1)                              # (B, n + 1, d)
        if first + x.shape[1] > self.cfg.n_positions:
            raise ValueError(f"AutoregressiveBaseline: {first} + {x.shape[1]} slots exceed the window's "
                             f"{self.cfg.n_positions} positions")
        x = x + self.position(torch.arange(first, first + x.shape[1], device=tokens.device).expand(B, -1))
        for i, block in enumerate(self.blocks):
            x = cached_block(block, x, cache.k[i], cache.v[i], first)
        cache.length = first + x.shape[1]
        return self.head(self.ln_f(x[:, -1]))                                                   # (B, V)

    @torch.no_grad()
    def generate(self, batch_size: int, n_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample (batch_size, n_tokens) tokens in raster order, one network call per token (call .eval() first)."""
        prefix = torch.zeros(batch_size, 0, dtype=torch.long, device=self.start.device)         # (B, 0)
        return continue_tokens(self, prefix, n_tokens, temperature, top_k, generator)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def sample_token(logits: torch.Tensor, temperature: float, top_k: int | None, generator,
                 foreground_temperature: float = 1.0, background_code: int | None = None) -> torch.Tensor:
    """logits (B, V) -> one token per row (B, 1), drawn from softmax(logits / temperature) over the top k, after
    the same sharpening of the non-background codes as MeBT's draws (mebt.decoding.sharpen_foreground)."""
    logits = sharpen_foreground(logits, foreground_temperature, background_code) / temperature
    if top_k is not None:   # keep the k most likely codes
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]               # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    return torch.multinomial(logits.softmax(-1), 1, generator=generator)                      # (B, 1)


@torch.no_grad()
def continue_tokens(model: nn.Module, prefix: torch.Tensor, n_tokens: int, temperature: float = 1.0,
                    top_k: int | None = None, generator: torch.Generator | None = None,
                    cache: KVCache | None = None, foreground_temperature: float = 1.0,
                    background_code: int | None = None) -> torch.Tensor:
    """prefix (B, p) known tokens -> (B, p + n_tokens): n_tokens sampled after them, one model call each (the
    first call also feeds the prefix). `model` is an AutoregressiveBaseline, or a module that calls one."""
    cfg = model.cfg
    B, p = prefix.shape
    if not 1 <= p + n_tokens <= cfg.n_positions or n_tokens < 1:
        raise ValueError(f"generate: {p} given + {n_tokens} new tokens must fit the window of {cfg.n_positions}")
    if temperature <= 0:
        raise ValueError(f"generate: temperature={temperature} must be > 0")
    if cache is None:
        cache = KVCache(cfg, B, prefix.device, next(model.parameters()).dtype)
    cache.reset()
    tokens = torch.empty(B, p + n_tokens, dtype=torch.long, device=prefix.device)              # filled in place
    tokens[:, :p] = prefix
    fed = prefix                                                                   # (B, p): the prefix first
    for i in range(p, p + n_tokens):
        tokens[:, i:i + 1] = sample_token(model(fed, cache), temperature, top_k, generator, foreground_temperature,
                                          background_code)
        fed = tokens[:, i:i + 1]                                                                # then the newest token
    return tokens


@torch.no_grad()
def generate_long(model: nn.Module, batch_size: int, t_total: int, prime: torch.Tensor | None = None,
                  carry: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                  generator: torch.Generator | None = None, foreground_temperature: float = 1.0,
                  background_code: int | None = None) -> torch.Tensor:
    """A (B, t_total, h, w) token video from a model of windows model.cfg.grid = (t_window, h, w).

    prime: optional (B, k, h, w) first latent frames, kept. The first window is filled token by token; then the
    window slides: its first `carry` latent frames (default t_window - 1: the most context) are the last ones made
    so far, fed as one prefix call at the window's positions 0.., and t_window - carry new frames are sampled.
    One model call per sampled token."""
    t_window, h, w = model.cfg.grid
    carry = t_window - 1 if carry is None else carry
    if not 0 < carry < t_window:
        raise ValueError(f"generate_long: carry={carry} latent frames must be in [1, {t_window - 1}]")
    device = next(model.parameters()).device
    foreground = (foreground_temperature, background_code)
    cache = KVCache(model.cfg, batch_size, device, next(model.parameters()).dtype)   # reused by every window
    video = torch.empty(batch_size, 0, h, w, dtype=torch.long, device=device) if prime is None else prime.to(device)
    if video.shape[1] < t_window:                                                    # fill the first window
        frames = min(t_window, t_total) - video.shape[1]
        video = continue_tokens(model, video.flatten(1), frames * h * w, temperature, top_k, generator, cache,
                                *foreground)
        video = video.view(batch_size, -1, h, w)
    while video.shape[1] < t_total:
        frames = min(t_window - carry, t_total - video.shape[1])                     # new latent frames this window
        window = continue_tokens(model, video[:, -carry:].flatten(1), frames * h * w, temperature, top_k,
                                 generator, cache, *foreground)                      # (B, (carry + frames) * h * w)
        video = torch.cat([video, window[:, carry * h * w:].view(batch_size, frames, h, w)], dim=1)
    return video[:, :t_total]
