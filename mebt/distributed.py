"""Processes: one process or many (torchrun + DistributedDataParallel), per-step seeds, graceful stops.

`torchrun --nproc_per_node=N train.py ...` starts N copies of train.py and sets RANK, WORLD_SIZE and
LOCAL_RANK in each; `setup()` reads them and joins the process group (NCCL on GPUs, gloo on CPU).
A plain `python train.py` is a single process, rank 0 of 1, with no process group at all.

Resumable randomness: every training step draws its randomness from generators seeded by
(seed, step, rank) alone, so a run resumed at step s makes exactly the draws the uninterrupted run
made at step s, and every rank draws a different shard of data. What must agree across ranks (the
window length T of a step: every rank waits for the slowest) comes from shared_generator(seed, step).

Try it (two CPU processes that agree on a flag):
    torchrun --nproc_per_node=2 -m mebt.distributed
"""
from __future__ import annotations

import os
import random
import signal
import sys
import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0   # rank 0 alone writes checkpoints, logs and samples and shows progress bars

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str) -> Dist:
    """Join the process group if torchrun started us (WORLD_SIZE > 1); pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Dist(device=torch.device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(local_rank)          # one GPU per process, chosen by its rank on this node
        dev, backend = torch.device("cuda", local_rank), "nccl"
    else:
        dev, backend = torch.device(device), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size)   # MASTER_ADDR/PORT from the env
    return Dist(rank, world_size, local_rank, dev)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, broadcast_buffers: bool = True) -> nn.Module:
    """DDP averages gradients across ranks during backward(); a single process trains the model as is.

    Every parameter takes part in every step (training never has an empty context, see mebt.masking), so DDP
    runs without find_unused_parameters, which would walk the autograd graph after every forward.
    broadcast_buffers=False: the module keeps its buffers equal on every rank itself (the tokenizer's EMA
    codebook is all-reduced by the quantizer), so DDP need not copy rank 0's buffers before each forward."""
    if not d.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
                                   broadcast_buffers=broadcast_buffers)


def any_rank(flags: list[bool], d: Dist) -> list[bool]:
    """Each flag is True on every rank if it is True on any rank (ranks must stop at the same step)."""
    if not d.enabled:
        return flags
    t = torch.tensor([float(f) for f in flags], device=d.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def max_across(t: torch.Tensor, d: Dist) -> torch.Tensor:
    """The elementwise max of a device tensor over ranks, computed on the device (nothing is read back)."""
    if not d.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def sum_across(values: list[float], d: Dist) -> list[float]:
    """Sum each value over ranks (used for sharded evaluation: sums of losses and counts)."""
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return t.tolist()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


# ------------------------------------------------------------------------------------------------ randomness

def step_generator(seed: int, step: int, rank: int = 0, device: str | torch.device = "cpu") -> torch.Generator:
    """Seed torch / numpy / random for this step and return a separate generator for the data draws.

    Both depend only on (seed, step, rank): resuming at `step` replays the same draws, and ranks differ.
    The global RNGs serve whatever the model draws internally (dropout, dead-code restarts)."""
    data_seed, global_seed = np.random.SeedSequence([seed, step, rank]).generate_state(2)   # two uint32 streams
    torch.manual_seed(int(global_seed))          # also seeds every CUDA device
    np.random.seed(int(global_seed))
    random.seed(int(global_seed))
    return torch.Generator(device).manual_seed(int(data_seed))


def shared_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator seeded by (seed, step) only: the same draws on every rank (e.g. the step's window length).

    Its stream differs from every rank's step_generator stream (a two-number seed sequence, not three)."""
    (shared_seed,) = np.random.SeedSequence([seed, step]).generate_state(1)
    return torch.Generator().manual_seed(int(shared_seed))


def rng_state() -> dict:
    """All global RNG states as tensors and plain values (loadable with weights_only=True)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))   # weights_only loading turns the inner tuple into a list
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ stopping

class Stopped(Exception):
    """Training stopped on Ctrl-C / SIGTERM after saving a checkpoint; the message says how to resume."""


class GracefulStop:
    """Inside `with GracefulStop() as stop:`, Ctrl-C and SIGTERM only set `stop.requested`, so the training
    loop can finish its step and save a checkpoint. A second Ctrl-C raises KeyboardInterrupt as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> "GracefulStop":
        self.requested = False
        self._previous = {}
        if threading.current_thread() is threading.main_thread():   # Python only allows handlers there
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt            # impatient second Ctrl-C: give up without saving
        self.requested = True
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint after this step (Ctrl-C again to abort)",
              file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    d = setup("cpu")
    print(f"rank {d.rank}/{d.world_size}: any_rank([rank == 1]) = {any_rank([d.rank == 1], d)}, "
          f"first draw {torch.randint(100, (1,), generator=step_generator(0, 0, d.rank)).item()}")
    teardown(d)
