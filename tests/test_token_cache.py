"""Token cache: encodes once, reloads without encoding, rebuilds (and says why) when the key changes,
stores compactly and exactly. Uses a stand-in tokenizer so it does not depend on mebt.tokenizer."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mebt.checkpoint import save_checkpoint
from mebt.token_cache import TokenDataset, build_or_load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BlockMeanTokenizer(nn.Module):
    """Stand-in for VQTokenizer.encode: one token per 4x4x4 block = its quantised mean brightness."""

    def __init__(self, codebook_size=512):
        super().__init__()
        self.codebook_size = codebook_size
        self.weight = nn.Parameter(torch.ones(()))   # a real module has parameters; encode must not track them
        self.calls, self.seen = 0, []                 # seen: (batch size, training flag, grad enabled) per call

    def encode(self, video):                          # (B, 3, T, H, W) -> (B, T/4, H/4, W/4)
        self.calls += 1
        self.seen.append((len(video), self.training, torch.is_grad_enabled()))
        means = F.avg_pool3d(video.mean(1, keepdim=True), 4).squeeze(1)       # (B, t, h, w) in [-1, 1]
        return ((means + 1) / 2 * (self.codebook_size - 1)).round().long()


def _clip(seed, frames=8, size=16):
    return torch.rand(3, frames, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class Clips(torch.utils.data.Dataset):               # like SyntheticVideos: item i is clip i
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return _clip(i)


class LongVideos(torch.utils.data.Dataset):           # like FrameFolderVideos: random windows, plus fixed ones
    def __init__(self, lengths, frames=8):
        self.videos = [_clip(100 + v, frames=n) for v, n in enumerate(lengths)]
        self.frames = frames

    def __len__(self):
        return len(self.videos)

    def __getitem__(self, i):
        raise AssertionError("random windows must not be cached")

    def clip_starts(self):
        return [(v, s) for v, video in enumerate(self.videos)
                for s in range(0, video.shape[1] - self.frames + 1, self.frames)]

    def clip(self, video_index, start):
        return self.videos[video_index][:, start:start + self.frames]


def _key(**changes):
    key = {"tokenizer": "0123456789abcdef", "data": {"dataset": "synthetic", "resolution": 16, "frames": 8},
           "clip_frames": 8}
    key.update(changes)
    return key


def _expected(clips, codebook_size=512):
    return BlockMeanTokenizer(codebook_size).encode(torch.stack(clips))


def test_builds_then_loads_without_encoding(tmp_path, capsys):
    path = tmp_path / "cache" / "tokens.pt"
    tokenizer = BlockMeanTokenizer()
    tokens = build_or_load(path, tokenizer, Clips(10), _key(), batch_size=4, progress=False)
    assert tokenizer.calls == 3 and [b for b, _, _ in tokenizer.seen] == [4, 4, 2]     # batched, every clip once
    assert tokens.shape == (10, 2, 4, 4) and tokens.dtype == torch.int16
    assert torch.equal(tokens.long(), _expected([_clip(i) for i in range(10)]))       # exact, in dataset order
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "token cache: 10 clips of 2x4x4 tokens (torch.int16) ->" in out[0]
    assert out[0].endswith(" s") and "KiB" in out[0]                                   # size on disk and time taken
    assert os.listdir(path.parent) == ["tokens.pt"]                                    # written atomically

    again = BlockMeanTokenizer()
    reloaded = build_or_load(path, again, Clips(10), _key(), batch_size=4, progress=False)
    assert again.calls == 0 and torch.equal(reloaded, tokens) and reloaded.dtype == torch.int16
    assert "loaded 10 clips" in capsys.readouterr().out


def test_rebuilds_when_key_changes_and_says_why(tmp_path, capsys):
    path = tmp_path / "tokens.pt"
    build_or_load(path, BlockMeanTokenizer(), Clips(3), _key(), progress=False)
    capsys.readouterr()
    new_key = _key(tokenizer="fedcba9876543210", data={"dataset": "synthetic", "resolution": 32, "frames": 8})
    tokenizer = BlockMeanTokenizer(codebook_size=64)                                   # a "retrained" tokenizer
    tokens = build_or_load(path, tokenizer, Clips(3), new_key, progress=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"token cache {path} is stale (changed: data.resolution, tokenizer); rebuilding"
    assert tokenizer.calls == 1 and torch.equal(tokens.long(), _expected([_clip(i) for i in range(3)], 64))
    reused = BlockMeanTokenizer()
    assert torch.equal(build_or_load(path, reused, Clips(3), new_key, progress=False), tokens) and reused.calls == 0
    dropped = BlockMeanTokenizer()                                                     # a field removed is a change too
    build_or_load(path, dropped, Clips(3), {k: v for k, v in new_key.items() if k != "clip_frames"}, progress=False)
    assert dropped.calls == 1 and "(changed: clip_frames)" in capsys.readouterr().out


def test_tuple_or_list_in_key_is_not_a_change(tmp_path):
    path = tmp_path / "tokens.pt"
    build_or_load(path, BlockMeanTokenizer(), Clips(2), _key(grid=(2, 4, 4)), progress=False)
    tokenizer = BlockMeanTokenizer()
    build_or_load(path, tokenizer, Clips(2), _key(grid=[2, 4, 4]), progress=False)     # e.g. after Config.to_dict()
    assert tokenizer.calls == 0


def test_large_codebook_uses_int32_and_stays_exact(tmp_path):
    tokenizer = BlockMeanTokenizer(codebook_size=65536)
    tokens = build_or_load(tmp_path / "tokens.pt", tokenizer, Clips(5), _key(), batch_size=2, progress=False)
    assert tokens.dtype == torch.int32 and tokens.max() > 32767                         # would overflow int16
    assert torch.equal(tokens.long(), _expected([_clip(i) for i in range(5)], 65536))


def test_clip_starts_datasets_use_fixed_windows_in_order(tmp_path):
    dataset = LongVideos(lengths=[20, 8, 17])          # windows: (0,0), (0,8), (1,0), (2,0), (2,8)
    tokens = build_or_load(tmp_path / "tokens.pt", BlockMeanTokenizer(), dataset, _key(), batch_size=3, progress=False)
    clips = [dataset.clip(v, s) for v, s in dataset.clip_starts()]
    assert len(clips) == 5 and torch.equal(tokens.long(), _expected(clips))


def test_encodes_in_eval_mode_without_grad_and_restores_mode(tmp_path):
    tokenizer = BlockMeanTokenizer().train()
    build_or_load(tmp_path / "tokens.pt", tokenizer, Clips(3), _key(), batch_size=2, progress=False)
    assert all(not training and not grad for _, training, grad in tokenizer.seen)
    assert tokenizer.training                                                          # the caller's mode is back


def test_refuses_a_model_checkpoint_at_the_cache_path(tmp_path):
    path = tmp_path / "mebt.pt"
    save_checkpoint(path, {"kind": "mebt", "model": {}})
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"mebt\.pt is a 'mebt' checkpoint, expected 'token_cache'"):
        build_or_load(path, BlockMeanTokenizer(), Clips(2), _key(), progress=False)
    assert path.read_bytes() == before                                                 # not overwritten


def test_key_must_be_plain(tmp_path):
    with pytest.raises(ValueError, match="token cache key must hold only plain values"):
        build_or_load(tmp_path / "tokens.pt", BlockMeanTokenizer(), Clips(2), {"weights": torch.ones(1)}, progress=False)


def test_token_dataset_returns_long_grids(tmp_path):
    tokens = build_or_load(tmp_path / "tokens.pt", BlockMeanTokenizer(), Clips(4), _key(), progress=False)
    dataset = TokenDataset(tokens)
    assert len(dataset) == 4
    item = dataset[2]
    assert item.dtype == torch.long and item.shape == (2, 4, 4) and torch.equal(item, tokens[2].long())


def test_worker_processes_encode_the_same_clips_in_the_same_order(tmp_path):
    dataset = LongVideos(lengths=[20, 8, 17, 33])
    serial = build_or_load(tmp_path / "a.pt", BlockMeanTokenizer(), dataset, _key(), batch_size=3, progress=False,
                           num_workers=0)
    parallel = build_or_load(tmp_path / "b.pt", BlockMeanTokenizer(), dataset, _key(), batch_size=3, progress=False,
                             num_workers=2)
    assert torch.equal(serial, parallel) and len(serial) == 2 + 1 + 2 + 4                 # windows of 8 frames


# A build in a child process, killed with SIGKILL (no handler, no cleanup) while it encodes or while it writes.
CHILD = """
import os, sys, time, torch
sys.path[:0] = [{root!r}, {tests!r}]
from test_token_cache import BlockMeanTokenizer, _clip
from mebt.token_cache import build_or_load

class Slow(torch.utils.data.Dataset):
    def __len__(self):
        return 40
    def __getitem__(self, i):
        if i == 8 and {during!r} == "encode":
            open({marker!r}, "w").close()                  # the parent kills us once this exists
        time.sleep(0.05)
        return _clip(i)

real_save = torch.save
def stalled_save(payload, path):                           # half a file on disk, then never finish
    real_save(payload, path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    open({marker!r}, "w").close()
    time.sleep(60)
if {during!r} == "write":
    torch.save = stalled_save
build_or_load({path!r}, BlockMeanTokenizer(), Slow(), {key!r}, batch_size=4, progress=False, num_workers=0)
"""


def kill_build(tmp_path, during: str, key: dict) -> None:
    marker = tmp_path / "marker"
    script = CHILD.format(root=ROOT, tests=os.path.dirname(os.path.abspath(__file__)), during=during,
                          marker=str(marker), path=str(tmp_path / "tokens.pt"), key=key)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists(), f"the child exited ({child.poll()}) before reaching the {during} stage"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL


def test_a_build_killed_while_encoding_leaves_no_cache(tmp_path):
    kill_build(tmp_path, "encode", _key())
    assert os.listdir(tmp_path) == ["marker"]                                       # nothing half-written
    tokenizer = BlockMeanTokenizer()
    tokens = build_or_load(tmp_path / "tokens.pt", tokenizer, Clips(40), _key(), progress=False)
    assert tokenizer.calls > 0 and torch.equal(tokens.long(), _expected([_clip(i) for i in range(40)]))


def test_a_rebuild_killed_while_writing_keeps_the_previous_cache(tmp_path, capsys):
    old = build_or_load(tmp_path / "tokens.pt", BlockMeanTokenizer(), Clips(40), _key(), progress=False)
    kill_build(tmp_path, "write", _key(clip_frames=4))                             # a stale key: it rebuilds
    leftover = [name for name in os.listdir(tmp_path) if name.startswith("tokens.tmp-")]
    assert len(leftover) == 1                                                       # the half file has its own name
    reused = BlockMeanTokenizer()
    assert torch.equal(build_or_load(tmp_path / "tokens.pt", reused, Clips(40), _key(), progress=False), old)
    assert reused.calls == 0                                                        # the old cache, intact
    rebuilt = BlockMeanTokenizer()
    build_or_load(tmp_path / "tokens.pt", rebuilt, Clips(40), _key(clip_frames=4), progress=False)
    assert rebuilt.calls > 0 and "stale (changed: clip_frames)" in capsys.readouterr().out   # never trusted


def test_background_code_is_the_code_of_at_least_half_the_tokens_or_none():
    from mebt.token_cache import background_code
    tokens = torch.tensor([[3, 3, 3, 1], [3, 0, 3, 2]], dtype=torch.int16)   # code 3: 5 of 8
    assert background_code(tokens, 4) == 3
    assert background_code(torch.tensor([3, 3, 1, 2, 0, 1]), 4) == -1        # commonest, but a third only
