"""Warn before training when other processes already keep this machine's CPU cores busy.

PyTorch starts one thread per core. Next to another busy process those threads wait on each other at every
parallel region, and a step slows far more than the shared cores explain: on our 2-core machine a 2-thread
transformer step took 1.3 s beside one 1-thread job, against 0.2–0.3 s alone (README, Training). One thread
per free core avoids it, so each training run says so once, before its first step (warn_if_cpu_busy).

    python -c "from mebt.cpu_load import busy_cores; print(busy_cores())"   # cores other processes use now

Linux only (it reads /proc/stat); elsewhere it stays silent.
"""
from __future__ import annotations

import os
import sys
import time

import torch

STAT = "/proc/stat"


def usable_cpus() -> list[int]:
    """The CPU numbers this process may run on (a container's or job scheduler's cpuset, else every core)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_times(text: str, cpus: list[int] | None = None) -> tuple[int, int]:
    """(busy, total) clock ticks from the text of /proc/stat: summed over all cores (its first line), or over
    the `cpus` given (their cpuN lines)."""
    lines = text.splitlines()
    rows = lines[:1] if cpus is None else [line for line in lines if line.partition(" ")[0] in {f"cpu{c}" for c in cpus}]
    busy = total = 0
    for row in rows:
        fields = [int(x) for x in row.split()[1:9]]   # user nice system idle iowait irq softirq steal
        busy += sum(fields) - fields[3] - fields[4]   # idle and waiting for I/O do not use a core
        total += sum(fields)
    return busy, total


def busy_cores(interval: float = 0.2, path: str = STAT, cpus: list[int] | None = None) -> float | None:
    """How many cores' worth of time all processes used over the next `interval` seconds, on every core or on
    the `cpus` given; None off Linux.

    Call it while this process is idle: then every busy tick belongs to someone else."""
    try:
        with open(path) as f:
            busy0, total0 = cpu_times(f.read(), cpus)
        time.sleep(interval)
        with open(path) as f:
            busy1, total1 = cpu_times(f.read(), cpus)
    except (OSError, ValueError, IndexError):   # no /proc (macOS, Windows) or a format we do not know
        return None
    if total1 <= total0:
        return None
    return (busy1 - busy0) / (total1 - total0) * (len(cpus) if cpus is not None else os.cpu_count() or 1)


def busy_warning(busy: float | None, threads: int, cores: int) -> str | None:
    """The one-line advice when `threads` new threads would not fit beside `busy` cores of other work, else None."""
    if busy is None or busy + threads <= cores + 0.5:   # half a core of slack: shells, editors, the odd cron job
        return None
    free = max(1, round(cores - busy))
    return (f"warning: other processes are using {busy:.1f} of {cores} CPU cores and this run starts {threads} "
            f"threads; competing threads can make every step several times slower. Wait for them to finish, "
            f"or run with OMP_NUM_THREADS={free}")


_checked = []   # warn at most once per process: later stages and in-process test runs skip the 0.2 s look


def warn_if_cpu_busy(dist) -> None:
    """Print busy_warning on stderr, once per process, for a single-process CPU run (torchrun's ranks on one
    machine would count each other as busy). Only the cores this process may use count: in a container or a
    scheduler's cpuset, jobs on the machine's other cores do not compete. Call it after the run's inputs are
    checked, so that an error stays one line."""
    if _checked or not dist.is_main or dist.enabled or dist.device.type != "cpu":
        return
    _checked.append(True)
    cpus = usable_cpus()
    warning = busy_warning(busy_cores(cpus=cpus), torch.get_num_threads(), len(cpus))
    if warning:
        print(warning, file=sys.stderr)
