"""Small helpers every benchmark shares: where results go, timing on CPU or CUDA, list flags, atomic JSON."""
from __future__ import annotations

import json
import os
import statistics
import time

import torch

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "results")
REPEATS, REPEAT_SECONDS = 3, 10.0  # median of up to 3 timed runs, fewer once they add up to 10 s


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)   # CUDA kernels run asynchronously: wait before reading the clock


def median_seconds(fn, device: torch.device, repeats: int | None = None) -> float:
    """Median wall time of up to `repeats` (default REPEATS) calls of fn, stopping early once they add up to
    REPEAT_SECONDS. The caller warms up first."""
    repeats = REPEATS if repeats is None else repeats
    times: list[float] = []
    while len(times) < repeats and sum(times) < REPEAT_SECONDS:
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def parse_list(flag: str, text: str, allowed=None, kind=str) -> list:
    """'a,b,c' -> [kind(a), ...]; a one-line ValueError naming the flag otherwise."""
    try:
        values = [kind(v) for v in text.split(",") if v]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected a comma-separated list of {kind.__name__}") from None
    if not values or (allowed is not None and set(values) - set(allowed)):
        raise ValueError(f"{flag} {text!r}: expected a comma-separated list of {', '.join(allowed or [kind.__name__])}")
    return values


def write_json(path: str, data) -> None:
    """Write JSON atomically (temporary file, then rename): an interrupted run never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, allow_nan=False)
    os.replace(tmp, path)


def device_name(device: torch.device) -> str:
    """A short name for result files: 'cpu', or the CUDA device's name ('nvidia-h100-80gb-hbm3')."""
    if device.type != "cuda":
        return device.type
    return torch.cuda.get_device_name(device).lower().replace(" ", "-")
