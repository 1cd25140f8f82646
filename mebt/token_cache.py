"""Token cache: the training clips encoded once by the frozen tokenizer, stored on disk.

The authors re-encode every clip with the (frozen) tokenizer at every training step; we
encode each clip once. The cache file holds the token grids of all clips, stored compactly
(int16 when every index fits, else int32: call `.long()` on use, or use TokenDataset), and
the `key` that produced them: a plain dict built by the caller, e.g.
    {"tokenizer": fingerprint(tokenizer.state_dict()), "data": asdict(cfg.data), "clip_frames": 128}
A later call with the same key loads the file; with a different key it re-encodes, printing
one line that names the key fields that changed. A cache is never silently reused.

Clips are taken in a fixed order: `dataset.clip(video_index, start)` for every
(video_index, start) in `dataset.clip_starts()` when the dataset has that method (real
videos: non-overlapping windows), else every `dataset[i]`. Real videos are read by DataLoader
worker processes (video_folder.loader_workers) while this process encodes; the token grids go
into one preallocated tensor, so memory grows only by the tokens themselves (no per-video
overhead: 10,000 videos cost their 2-byte tokens). The file is written once, atomically (a
temporary file renamed over the path): a build killed at any point leaves no cache, or the
previous one, never half a file that a later run would load.

    tokens = build_or_load("out/tokens.pt", tokenizer, dataset, key)   # (num_clips, t, h, w) int16
    batch = tokens[indices].long()                                      # (B, t, h, w)

Try it: python -m pytest -q tests/test_token_cache.py   (uses a stand-in tokenizer)
"""
from __future__ import annotations

import json
import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mebt.checkpoint import load_checkpoint, save_checkpoint
from mebt.clip_loader import batches
from mebt.video_folder import loader_workers

KIND = "token_cache"      # the checkpoint "kind" of a cache file: load_checkpoint refuses model checkpoints here
_MISSING = object()       # marks a key field present on one side only


def _plain_key(key: dict) -> dict:
    """The key as JSON would store it (tuples -> lists), so a tuple/list difference never forces a rebuild."""
    try:
        return json.loads(json.dumps(key, sort_keys=True))
    except TypeError as e:
        raise ValueError(f"token cache key must hold only plain values (dict, list, str, int, float, bool, None): {e}") from None


def _changed_fields(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the entries that differ between two nested key dicts, e.g. ["data.resolution"]."""
    changed = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name, _MISSING), new.get(name, _MISSING)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _changed_fields(a, b, f"{prefix}{name}.")
        elif a != b:
            changed.append(f"{prefix}{name}")
    return changed


class CacheClips(Dataset):
    """Clip k of the cache, in its fixed order (read in a DataLoader worker)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.starts = dataset.clip_starts() if hasattr(dataset, "clip_starts") else None   # [(video, start)]

    def __len__(self) -> int:
        return len(self.starts) if self.starts is not None else len(self.dataset)

    def __getitem__(self, k: int) -> torch.Tensor:
        return self.dataset.clip(*self.starts[k]) if self.starts is not None else self.dataset[k]   # (3, T, H, W)


def _encode_all(tokenizer: nn.Module, dataset, batch_size: int, device, progress: bool, workers: int) -> torch.Tensor:
    """Encode every clip of `dataset`, in order; returns (num_clips, t, h, w) int32 on the CPU."""
    clips = CacheClips(dataset)
    if len(clips) == 0:
        raise ValueError("token cache: the dataset has no clips to encode")
    # shuffle=False keeps the order; generator: the workers' base seed is not drawn from the global RNG
    loader = DataLoader(clips, batch_size=batch_size, num_workers=workers, generator=torch.Generator(),
                        pin_memory=torch.device(device).type == "cuda" and workers > 0)
    was_training = tokenizer.training
    tokenizer.eval()                                   # no dropout / codebook updates while encoding
    tokens, first = None, 0
    try:
        with torch.no_grad(), tqdm(total=len(clips), unit="clip", desc="tokenizing", disable=not progress) as bar:
            for batch in batches(loader):                                              # (B, 3, T, H, W)
                indices = tokenizer.encode(batch.to(device, non_blocking=True))         # (B, t, h, w)
                if tokens is None:                     # int32 until we know the largest index
                    tokens = torch.empty((len(clips), *indices.shape[1:]), dtype=torch.int32)
                tokens[first:first + len(batch)] = indices.to("cpu", torch.int32)
                first += len(batch)
                bar.update(len(batch))
    finally:
        tokenizer.train(was_training)                  # leave the caller's module as we found it
    return tokens


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 2**20:.1f} MiB" if num_bytes >= 2**20 else f"{num_bytes / 2**10:.1f} KiB"


def build_or_load(path, tokenizer: nn.Module, dataset, key: dict, batch_size: int = 8, device="cpu",
                  progress: bool = True, num_workers: int | None = None) -> torch.Tensor:
    """Return the token grids (num_clips, t, h, w) of every clip of `dataset`, int16 (or int32 if an index
    exceeds 32767): loaded from `path` when its key equals `key`, else encoded (tokenizer already on `device`)
    and written atomically to `path`. num_workers: DataLoader reading processes (default: loader_workers)."""
    path = os.fspath(path)
    if batch_size < 1:
        raise ValueError(f"token cache: batch_size={batch_size} must be >= 1")
    key = _plain_key(key)
    if os.path.exists(path):
        cached = load_checkpoint(path, KIND)           # clear errors for a corrupt file or a model checkpoint
        if cached["key"] == key:
            tokens = cached["tokens"]
            print(f"token cache: loaded {len(tokens)} clips of {'x'.join(map(str, tokens.shape[1:]))} tokens from {path}")
            return tokens
        print(f"token cache {path} is stale (changed: {', '.join(_changed_fields(cached['key'], key))}); rebuilding")
    start = time.perf_counter()
    workers = loader_workers(dataset) if num_workers is None else num_workers
    tokens = _encode_all(tokenizer, dataset, batch_size, device, progress, workers)   # (N, t, h, w) int32
    if tokens.min() < 0:
        raise ValueError(f"token cache: tokenizer.encode returned a negative index ({tokens.min().item()})")
    if tokens.max() <= torch.iinfo(torch.int16).max:   # true whenever codebook_size <= 32768: half the disk and RAM
        tokens = tokens.to(torch.int16)
    save_checkpoint(path, {"kind": KIND, "key": key, "tokens": tokens})
    print(f"token cache: {len(tokens)} clips of {'x'.join(map(str, tokens.shape[1:]))} tokens ({tokens.dtype}) "
          f"-> {path}, {_size(os.path.getsize(path))}, {time.perf_counter() - start:.1f} s")
    return tokens


class TokenDataset(torch.utils.data.Dataset):
    """The cached clips as a Dataset: item i is the LongTensor (t, h, w) of clip i."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens                           # (N, t, h, w), compact dtype

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.tokens[i].long()                   # embeddings index with int64


BACKGROUND_SHARE = 0.5   # a code that is at least half of all training tokens is a flat background (synthetic: 68%)


def background_code(tokens: torch.Tensor, vocab_size: int) -> int:
    """The code that makes up at least BACKGROUND_SHARE of `tokens` (a flat background), or -1 if no code does.

    tokens: any integer tensor of codebook indices, e.g. a whole cache. Real footage (sky, people) has no such
    code: its commonest code is a few percent, and -1 switches the foreground temperature off
    (mebt.decoding.sharpen_foreground)."""
    counts = torch.bincount(tokens.flatten().long(), minlength=vocab_size)   # (V,)
    top = int(counts.argmax())
    return top if counts[top] >= BACKGROUND_SHARE * tokens.numel() else -1
