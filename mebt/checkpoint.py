"""Checkpoints: an atomic save, a safe load, and a fingerprint of the weights.

A checkpoint is a plain dict, by convention
    {"kind": "tokenizer" | "mebt", "config": cfg.to_dict(), "model": model.state_dict(), ...}
holding only tensors and plain Python values, so that every load can use
torch.load(weights_only=True), which never runs code from the file. Saving goes to a
temporary file next to the target and is renamed over it only once fully written,
so a crash (or Ctrl-C) mid-save leaves the previous checkpoint intact.

Try it:
    python -c "import torch; from mebt.checkpoint import *; \
save_checkpoint('/tmp/c.pt', {'kind': 'mebt', 'model': {'w': torch.ones(2)}}); \
print(load_checkpoint('/tmp/c.pt', 'mebt'), fingerprint({'w': torch.ones(2)}))"
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
from collections import OrderedDict

import torch

PLAIN_TYPES = (str, int, float, bool, type(None))   # exact types: a subclass (an IntEnum, np.float64) pickles as a class


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path next to `path` (same suffix, so writers can infer the format);
    on success fsync it and rename it over `path`, on any exception delete it."""
    path = os.fspath(path)
    root, suffix = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{suffix}"          # same directory: os.replace must not cross filesystems
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        yield tmp
        with open(tmp, "rb+") as f:                    # the data must be on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)                          # atomic: readers see the old file or the new one, never half
    except BaseException:                              # BaseException: also clean up on KeyboardInterrupt
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _check_plain(value, where: str) -> None:
    """Raise ValueError naming the first entry that weights_only loading would refuse."""
    if isinstance(value, torch.Tensor) or type(value) in PLAIN_TYPES:
        return
    if type(value) in (dict, OrderedDict):             # state_dict() returns an OrderedDict, which is allowed
        for k, v in value.items():
            if type(k) not in (str, int):
                raise ValueError(f"checkpoint payload{where} has a key {k!r} of type {type(k).__name__}: use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if type(value) in (list, tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise ValueError(f"checkpoint payload{where} is a {type(value).__name__}: only tensors, dicts, lists, tuples, "
                     "str, int, float, bool and None can be saved (so loading can use weights_only=True)")


def save_checkpoint(path, payload: dict) -> None:
    """Atomically write `payload` (a dict with a str "kind") to `path`."""
    if not isinstance(payload, dict) or not isinstance(payload.get("kind"), str):
        raise ValueError("checkpoint payload must be a dict with a str 'kind' entry, e.g. {'kind': 'mebt', ...}")
    _check_plain(payload, "")                          # fail before touching the disk
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def _reason(error: Exception) -> str:
    """A one-line summary of a torch.load failure (its messages run over several lines)."""
    lines = str(error).strip().splitlines()
    first = lines[0].split(". ")[0] if lines else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def load_checkpoint(path, kind: str) -> dict:
    """Load a checkpoint onto the CPU, refusing anything but tensors and plain values, and check its kind."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))   # a class weights_only will not build
        if refused:
            raise ValueError(f"{path} contains a {refused.group(1)} object, which weights_only loading refuses: "
                             "only tensors and plain Python values are allowed (save with mebt.checkpoint.save_checkpoint)") from None
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated?): {_reason(e)}") from None
    except Exception as e:                             # truncated zip, random bytes, empty file: each raises differently
        raise ValueError(f"{path} is not a readable checkpoint (corrupt or truncated?): {_reason(e)}") from None
    if not isinstance(payload, dict) or "kind" not in payload:
        raise ValueError(f"{path} is not a MeBT checkpoint: expected a dict with a 'kind' entry")
    if payload["kind"] != kind:
        raise ValueError(f"{path} is a {payload['kind']!r} checkpoint, expected {kind!r}")
    return payload


def fingerprint(state_dict: dict) -> str:
    """16 hex chars of sha256 over every tensor's name, dtype, shape and bytes (sorted by name)."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"fingerprint: state_dict[{name!r}] is a {type(tensor).__name__}, expected a tensor")
        tensor = tensor.detach().cpu().contiguous()
        h.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())   # \0 separators: names cannot run together
        h.update(tensor.reshape(-1).view(torch.uint8).numpy())   # raw bytes; via uint8 so bfloat16 works too
    return h.hexdigest()[:16]
