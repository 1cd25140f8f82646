"""Vector quantizer with an EMA codebook: the discrete bottleneck of the video tokenizer.

Every encoder output vector z_e is replaced by its nearest codebook vector z_q; the index of that
vector is the token. The codebook is not trained by gradients but by exponential moving averages
(van den Oord et al. 2017, appendix; TATS uses the same): each code moves toward the mean of the
vectors assigned to it. The encoder is pulled toward its codes by the commitment loss
beta * ||z_e - sg(z_q)||^2 and receives the decoder's gradient through the straight-through trick.
Codes that stop being used (EMA usage below a threshold) are restarted on random encoder outputs of
the current batch, which is also how the codebook is initialised on the first training step.

Under DDP (torch.distributed initialised) the per-batch code counts and sums are all-reduced before
the EMA update and restart vectors are broadcast from rank 0, so every rank keeps the same codebook.

Try it (a training-mode call: the first one restarts every code on the given vectors):
    python -c "import torch; from mebt.quantizer import VectorQuantizer; print(VectorQuantizer(8, 2)(torch.randn(100, 2)).usage)"
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class QuantizerOutput(NamedTuple):
    quantized: torch.Tensor     # (..., D) z_q in the forward pass, gradient flows to z_e (straight-through)
    indices: torch.Tensor       # (...) long: the code chosen for each vector
    commit_loss: torch.Tensor   # scalar: beta * ||z_e - sg(z_q)||^2
    usage: torch.Tensor         # scalar: fraction of the codebook used by this batch
    perplexity: torch.Tensor    # scalar: exp(entropy) of this batch's code histogram (K = all codes used evenly)


def _all_reduce_sum_(t: torch.Tensor) -> torch.Tensor:
    # In DDP every rank must hold the same codebook: sum the per-batch statistics over ranks
    # before the EMA update, so all ranks apply the identical update.
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


class VectorQuantizer(nn.Module):
    def __init__(self, codebook_size: int, code_dim: int, decay: float = 0.99, commitment: float = 0.25,
                 dead_code_threshold: float = 1.0, eps: float = 1e-5):
        super().__init__()
        if codebook_size < 2 or code_dim < 1:
            raise ValueError(f"VectorQuantizer: codebook_size={codebook_size} must be >= 2 and code_dim={code_dim} >= 1")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"VectorQuantizer: decay={decay} must be in (0, 1)")
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.decay, self.commitment, self.dead_code_threshold, self.eps = decay, commitment, dead_code_threshold, eps
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))   # (K, D)
        # EMA of how many vectors each code receives per batch. Starting at zero marks every code as dead,
        # so the first training step restarts them all on real encoder outputs (a data-dependent init).
        self.register_buffer("cluster_size", torch.zeros(codebook_size))          # (K,)
        self.register_buffer("embed_sum", torch.zeros(codebook_size, code_dim))   # (K, D) EMA of summed vectors

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codebook vectors for integer codes: (...) long -> (..., D)."""
        return F.embedding(indices, self.codebook)

    @torch.no_grad()
    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the closest code (squared Euclidean) for each row: (N, D) -> (N,)."""
        # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2; ||z||^2 is the same for every code so it is dropped.
        distances = self.codebook.pow(2).sum(1)[None, :] - 2 * flat @ self.codebook.t()   # (N, K)
        return distances.argmin(1)

    def histogram(self, indices: torch.Tensor) -> torch.Tensor:
        """How many times each code occurs: (N,) long -> (K,) float. (index_add_, unlike bincount, also runs
        on the meta device, so shapes and FLOPs of a paper-sized tokenizer can be checked without memory.)"""
        ones = torch.ones(indices.shape[0], device=indices.device)
        return torch.zeros(self.codebook_size, device=indices.device).index_add_(0, indices, ones)

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        """z_e: (..., D) encoder outputs, channels last."""
        if z_e.shape[-1] != self.code_dim:
            raise ValueError(f"VectorQuantizer: last dim of the input is {z_e.shape[-1]}, expected code_dim={self.code_dim}")
        # Distances in bf16/fp16 would pick wrong codes: the quantizer runs in float32 even under autocast.
        with torch.autocast("cuda" if z_e.is_cuda else "cpu", enabled=False):
            z_e = z_e.float()
            flat = z_e.reshape(-1, self.code_dim)                                # (N, D)
            indices = self.nearest(flat)                                         # (N,)
            if self.training:
                self._ema_update(flat.detach(), indices)
                indices = self.nearest(flat)   # the update moved codes: re-assign so tokens match the new codebook
            z_q = self.lookup(indices).view_as(z_e)                              # (..., D)
            commit_loss = self.commitment * F.mse_loss(z_e, z_q.detach())
            quantized = z_e + (z_q - z_e).detach()   # straight-through: forward is z_q, backward is identity to z_e
            probs = self.histogram(indices) / indices.shape[0]                   # (K,) this batch's code frequencies
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
            usage = (probs > 0).float().mean()
        return QuantizerOutput(quantized, indices.view(z_e.shape[:-1]), commit_loss, usage, perplexity)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        counts = _all_reduce_sum_(self.histogram(indices))                                  # (K,) vectors per code
        sums = _all_reduce_sum_(torch.zeros_like(self.embed_sum).index_add_(0, indices, flat))   # (K, D) their sum
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        # Laplace smoothing keeps the division finite for codes that received (almost) nothing.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (n + self.codebook_size * self.eps) * n   # (K,)
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._restart_dead_codes(flat, indices)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """Move every dead code onto an encoder output, drawn with probability proportional to its squared
        distance from its code (as k-means++ seeds clusters). Uniform draws would mostly pick the commonest
        content (a flat background is most of every clip), already coded exactly: the code would die again."""
        dead = self.cluster_size < self.dead_code_threshold   # (K,) bool
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        errors = (flat - self.codebook[indices]).pow(2).sum(1)   # (N,) squared distance to the (updated) code
        weights = errors + 1e-12 * errors.max().clamp_min(1.0)   # (N,) all-zero errors (a perfect fit) -> uniform
        picks = flat[torch.multinomial(weights, n_dead, replacement=True)]   # (n_dead, D) badly coded outputs
        if dist.is_available() and dist.is_initialized():
            dist.broadcast(picks, src=0)   # every rank restarts to the same vectors, keeping codebooks identical
        self.codebook[dead] = picks
        # Give a restarted code exactly threshold usage: it survives only if it starts receiving vectors.
        self.cluster_size[dead] = self.dead_code_threshold
        self.embed_sum[dead] = picks * self.dead_code_threshold
