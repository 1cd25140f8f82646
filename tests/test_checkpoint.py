"""Checkpoints: round trip, atomicity under a crash, clear errors, weights_only safety, fingerprint."""
import os
from collections import OrderedDict

import pytest
import torch

from mebt import checkpoint
from mebt.checkpoint import fingerprint, load_checkpoint, save_checkpoint
from mebt.config import get_preset


def _payload(seed=0, kind="mebt"):
    g = torch.Generator().manual_seed(seed)
    model = OrderedDict(w=torch.randn(4, 3, generator=g), b=torch.zeros(3), steps=torch.tensor(7))
    return {"kind": kind, "config": get_preset("tiny").to_dict(), "model": model,
            "step": 12, "history": [1.5, None, True, ("a", 2)]}


def test_round_trip_preserves_everything(tmp_path):
    path = tmp_path / "sub" / "m.pt"                       # the directory is created on demand
    payload = _payload()
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path, "mebt")
    assert loaded["config"] == payload["config"] and loaded["step"] == 12
    assert loaded["history"] == payload["history"]
    assert list(loaded["model"]) == list(payload["model"])
    for name, tensor in payload["model"].items():
        assert torch.equal(loaded["model"][name], tensor) and loaded["model"][name].dtype == tensor.dtype
    assert os.listdir(path.parent) == ["m.pt"]            # no temporary file left behind


@pytest.mark.parametrize("crash_in", ["torch.save", "os.replace"])
def test_crash_during_write_keeps_previous_checkpoint(tmp_path, monkeypatch, crash_in):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _payload(seed=0))
    before = path.read_bytes()

    def half_save(obj, f):                                # writes part of a file, then dies like a killed process
        with open(f, "wb") as out:
            out.write(before[: len(before) // 2])
        raise OSError("disk full")

    def failing_replace(src, dst):
        raise OSError("rename failed")

    if crash_in == "torch.save":
        monkeypatch.setattr(checkpoint.torch, "save", half_save)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", failing_replace)
    with pytest.raises(OSError):
        save_checkpoint(path, _payload(seed=1))
    monkeypatch.undo()
    assert path.read_bytes() == before                    # the old checkpoint is untouched ...
    assert torch.equal(load_checkpoint(path, "mebt")["model"]["w"], _payload(seed=0)["model"]["w"])
    assert os.listdir(tmp_path) == ["m.pt"]               # ... and the temporary file was removed


def test_missing_file_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^no checkpoint at .*nope\.pt$"):
        load_checkpoint(tmp_path / "nope.pt", "mebt")


@pytest.mark.parametrize("content", ["truncated", "garbage", "empty"])
def test_corrupt_file_error_is_one_line(tmp_path, content):
    path = tmp_path / "m.pt"
    save_checkpoint(path, _payload())
    data = {"truncated": path.read_bytes()[:200], "garbage": b"not a checkpoint at all", "empty": b""}[content]
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"is not a readable checkpoint \(corrupt or truncated\?\)") as info:
        load_checkpoint(path, "mebt")
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_wrong_kind_error(tmp_path):
    path = tmp_path / "tok.pt"
    save_checkpoint(path, _payload(kind="tokenizer"))
    with pytest.raises(ValueError, match=r"tok\.pt is a 'tokenizer' checkpoint, expected 'mebt'$"):
        load_checkpoint(path, "mebt")
    assert load_checkpoint(path, "tokenizer")["kind"] == "tokenizer"


class Opaque:                                             # an arbitrary object: unpickling it could run code
    pass


@pytest.mark.parametrize("bad, where", [
    (Opaque(), "['extra']"),
    ({"inner": [1, Opaque()]}, "['extra']['inner'][1]"),
    (torch.float32, "['extra']"),                         # a dtype is not a plain value either
    ({1.5: "x"}, "['extra']"),                            # float keys are refused
])
def test_non_plain_payload_rejected_before_writing(tmp_path, bad, where):
    path = tmp_path / "m.pt"
    with pytest.raises(ValueError, match="checkpoint payload" + where.replace("[", r"\[").replace("]", r"\]")):
        save_checkpoint(path, {"kind": "mebt", "extra": bad})
    assert not path.exists() and os.listdir(tmp_path) == []


def test_payload_needs_a_kind(tmp_path):
    with pytest.raises(ValueError, match="'kind'"):
        save_checkpoint(tmp_path / "m.pt", {"model": {}})


def test_weights_only_load_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"kind": "mebt", "model": {}, "payload": Opaque()}, path)   # written without our validation
    with pytest.raises(ValueError, match=r"contains a \S*Opaque object, which weights_only loading refuses") as info:
        load_checkpoint(path, "mebt")
    assert "\n" not in str(info.value)


def test_fingerprint_is_deterministic_and_sensitive():
    model = _payload()["model"]
    fp = fingerprint(model)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint(OrderedDict(reversed(list(model.items())))) == fp      # key order does not matter
    assert fingerprint({k: v.clone() for k, v in model.items()}) == fp        # only values matter, not identity
    changed = {k: v.clone() for k, v in model.items()}
    changed["w"][2, 1] += 1e-6                                                # one tiny weight change
    assert fingerprint(changed) != fp
    assert fingerprint({**model, "w": model["w"].double()}) != fp              # dtype matters
    assert fingerprint({**model, "w": model["w"].reshape(3, 4)}) != fp         # shape matters
    renamed = {("w2" if k == "w" else k): v for k, v in model.items()}
    assert fingerprint(renamed) != fp                                          # names matter
    assert fingerprint({"x": torch.ones(2, dtype=torch.bfloat16)}) != fingerprint({"x": torch.ones(2, dtype=torch.float16)})
