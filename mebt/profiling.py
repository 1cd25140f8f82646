"""What one training step costs: FLOPs and the activation bytes autograd keeps for backward.

count_train_step runs one forward + backward under
  - torch.utils.flop_counter.FlopCounterMode   -> total FLOPs (matmuls and attention kernels), and
  - torch.autograd.graph.saved_tensors_hooks   -> bytes of every tensor saved for backward,
    deduplicated by storage (views of one buffer count once) and excluding the parameters
    (weights are kept anyway; we want the activation memory).
It works on the meta device too: build the model under `with torch.device("meta"):` and
paper-scale shapes cost no memory and no time. On meta, F.scaled_dot_product_attention would fall
back to its materialising math path, so we route it to the fused (flash) kernel's meta
implementation: the count then shows what a fused kernel keeps (output + log-sum-exp).

Try it:
    python -m mebt.profiling
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from mebt.config import ModelConfig
from mebt.masking import num_masked
from mebt.model import masked_token_loss

Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor]   # (model inputs, target tokens)
CPU_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _cpu_flash_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)   # shapes in; the same count as the registered CUDA kernels


def _cpu_flash_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# FlopCounterMode knows the CUDA attention kernels but not the CPU flash kernel (it would count 0)
CPU_FLASH_FLOPS = {CPU_FLASH: _cpu_flash_flops,
                   torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward_flops}


def _sdpa_arguments(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    return query, key, value, attn_mask, dropout_p, is_causal, scale   # binds F.scaled_dot_product_attention's signature


class FusedAttentionOnMeta(TorchFunctionMode):
    """Run F.scaled_dot_product_attention on meta tensors as the fused flash kernel, not the math path."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention and args[0].device.type == "meta":
            q, k, v, attn_mask, dropout_p, is_causal, scale = _sdpa_arguments(*args, **kwargs)
            return CPU_FLASH(q, k, v, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)[0]   # (out, logsumexp)
        return func(*args, **kwargs)


def _storage_key(t: torch.Tensor) -> int:
    # the address of the storage object itself: unique per buffer, and unlike data_ptr() it is not 0 on meta
    return t.untyped_storage()._cdata


def count_train_step(model: nn.Module, make_batch: Callable[[torch.device], Batch], device: torch.device | None = None,
                     loss_fn: Callable = masked_token_loss) -> dict:
    """One forward + backward of `model` in train mode on make_batch(device) -> dict(flops=int, saved_bytes=int).

    make_batch(device) returns (inputs, targets); the loss is loss_fn(model(*inputs), targets).
    device defaults to where the model's parameters live. Gradients are cleared afterwards.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    inputs, targets = make_batch(device)
    parameter_storages = {_storage_key(p) for p in model.parameters()}
    saved: dict[int, int] = {}   # storage key -> bytes

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in parameter_storages:
            saved[key] = t.untyped_storage().nbytes()   # the whole buffer stays alive, even if only a view was saved
        return t

    was_training = model.training
    model.train()
    counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)
    with counter, FusedAttentionOnMeta(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(model(*inputs), targets).backward()
    model.train(was_training)
    model.zero_grad(set_to_none=True)   # leave the model as we found it
    return dict(flops=int(counter.get_total_flops()), saved_bytes=int(sum(saved.values())))


def count_forward(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one forward pass (a decoding call): model(*inputs) under FlopCounterMode. Gradients stay enabled,
    as FlopCounterMode's module tracker expects (on the meta device that costs nothing); the count is the same."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)
    with counter, FusedAttentionOnMeta():
        model(*inputs)
    return int(counter.get_total_flops())


def masked_batch(cfg: ModelConfig, latent_frames: int, batch_size: int = 1, mask_ratio: float = 0.5,
                 seed: int = 0) -> Callable[[torch.device], Batch]:
    """make_batch for MeBT-like models: a clip of `latent_frames` x h x w tokens, ceil(ratio * N) of them masked."""
    t_max, h, w = cfg.grid
    if not 1 <= latent_frames <= t_max:
        raise ValueError(f"masked_batch: latent_frames={latent_frames} must be in [1, {t_max}] (model.grid)")
    n = latent_frames * h * w
    n_targets = num_masked(mask_ratio, n)   # the rule masking.sample_split uses

    def make_batch(device: torch.device) -> Batch:
        g = torch.Generator().manual_seed(seed)   # drawn on the CPU, then moved: same batch on every device
        order = torch.stack([torch.randperm(n, generator=g) for _ in range(batch_size)])   # (B, N) positions
        tokens = torch.randint(cfg.vocab_size, (batch_size, n), generator=g)              # (B, N) at those positions
        context_pos, target_pos = order[:, :n - n_targets], order[:, n - n_targets:]
        inputs = (tokens[:, :n - n_targets].to(device), context_pos.to(device), target_pos.to(device))
        return inputs, tokens[:, n - n_targets:].to(device)

    return make_batch


def sequence_batch(cfg: ModelConfig, latent_frames: int, batch_size: int = 1, seed: int = 0
                   ) -> Callable[[torch.device], Batch]:
    """make_batch for the autoregressive baseline: every token of a `latent_frames` clip, in raster order."""
    _, h, w = cfg.grid
    n = latent_frames * h * w

    def make_batch(device: torch.device) -> Batch:
        g = torch.Generator().manual_seed(seed)
        tokens = torch.randint(cfg.vocab_size, (batch_size, n), generator=g).to(device)   # (B, N)
        return (tokens,), tokens   # next-token targets are the tokens themselves (see AutoregressiveBaseline)

    return make_batch


if __name__ == "__main__":
    from mebt.baselines import AutoregressiveBaseline, FullAttentionBaseline
    from mebt.config import get_preset
    from mebt.model import MeBT

    cfg = get_preset("paper").model
    with torch.device("meta"):   # paper-scale shapes, no memory
        models = {"MeBT": MeBT(cfg), "full (fused)": FullAttentionBaseline(cfg),
                  "full (materialised)": FullAttentionBaseline(cfg, materialize=True),
                  "autoregressive": AutoregressiveBaseline(cfg)}
    for frames in (16, 128):
        for name, model in models.items():
            batch = sequence_batch(cfg, frames // 4) if name == "autoregressive" else masked_batch(cfg, frames // 4)
            cost = count_train_step(model, batch)
            print(f"{frames:4d} frames  {name:20s} {cost['flops'] / 1e12:8.2f} TFLOP  {cost['saved_bytes'] / 2**30:7.2f} GiB saved")
