"""bench.py ablations (benchmarks/ablations.py, benchmarks/ablation_variants.py): each variant changes exactly one
thing, the FLOP count per step is exact, the context-updating encoder is MeBT's encoder plus context updates, and
a tiny end-to-end run writes a consistent table.

    python -m pytest -q tests/test_ablations.py
"""
import dataclasses
import json
import types

import pytest
import torch

from benchmarks import ablation_variants as variants
from benchmarks import ablations
from mebt.config import get_preset
from mebt.encoder import LatentEncoder
from mebt.masking import num_masked
from mebt.profiling import count_train_step, masked_batch

CHANGED = {   # variant -> the only (section, field) it may change against the tiny preset
    "base": set(), "base seed 1": set(), "context updated": set(), "L=8": {("model", "n_latents")},
    "L=128": {("model", "n_latents")}, "no curriculum": {("train", "curriculum")},
    "no write": {("model", "decoder_layers")}, "cosine ratio": {("model", "mask_schedule")},
}


def test_every_variant_changes_one_thing():
    base = get_preset("tiny")
    assert set(variants.VARIANTS) == set(CHANGED)
    for name in variants.VARIANTS:
        cfg, seed = variants.variant_config(name, base)
        changed = {(section, f.name) for section in ("data", "tokenizer", "model", "train")
                   for f in dataclasses.fields(getattr(base, section))
                   if getattr(getattr(cfg, section), f.name) != getattr(getattr(base, section), f.name)}
        assert changed == CHANGED[name], name
        assert seed == (1 if name == "base seed 1" else 0)
        assert isinstance(variants.build_model(name, cfg), variants.ContextUpdatingMeBT) == (name == "context updated")
    no_write, _ = variants.variant_config("no write", base)   # as many decoder blocks as the base: same parameters
    assert set(no_write.model.decoder_layers) == {"read"}
    assert len(no_write.model.decoder_layers) == len(base.model.decoder_layers)


def test_step_flops_is_exact_for_any_split_and_batch():
    base = get_preset("tiny")
    for name in ("base", "context updated", "no write"):
        cfg, _ = variants.variant_config(name, base)
        flops = variants.step_flops(name, cfg)
        with torch.device("meta"):
            model = variants.build_model(name, cfg)
        for frames, ratio, batch in ((32, 0.5, 2), (3, 0.9, 3), (17, 0.1, 1)):   # points the fit never saw
            n = frames * 64
            n_masked = num_masked(ratio, n)   # the count masked_batch uses
            counted = count_train_step(model, masked_batch(cfg.model, frames, batch, ratio), torch.device("meta"))
            assert abs(flops(batch, n - n_masked, n_masked) - counted["flops"]) < 1e-6 * counted["flops"], (name, frames)


def test_updating_the_context_costs_more_per_context_token_and_nothing_per_target():
    base = get_preset("tiny")
    frozen = variants.step_flops("base", base)
    updated = variants.step_flops("context updated", base)
    per_context = lambda f: f(1, 2, 1) - f(1, 1, 1)
    per_target = lambda f: f(1, 1, 2) - f(1, 1, 1)
    assert per_context(updated) > 2 * per_context(frozen)        # a context update adds query, output and MLP work
    assert abs(per_target(updated) - per_target(frozen)) < 1e-6 * per_target(frozen)


def silence(block):
    """Make a Block return its query unchanged: zero the attention output and the MLP's last layer."""
    for linear in (block.attn.proj, block.mlp[2]):
        torch.nn.init.zeros_(linear.weight)
        torch.nn.init.zeros_(linear.bias)


def test_context_updating_encoder_is_mebts_encoder_plus_context_updates():
    cfg = get_preset("tiny").model
    torch.manual_seed(0)
    updating = variants.ContextUpdatingEncoder(cfg)
    assert len(updating.context_layers) == cfg.encoder_layers.count("cross") - 1   # none after the last cross layer
    plain = LatentEncoder(cfg)
    plain.load_state_dict(updating.state_dict(), strict=False)    # the shared weights: latents and layers
    context = torch.randn(2, 50, cfg.d_model)
    assert not torch.allclose(updating(context), plain(context), atol=1e-4)   # later cross layers read a new context
    for block in updating.context_layers:
        silence(block)
    assert torch.allclose(updating(context), plain(context), atol=1e-6)       # no update: exactly MeBT's encoder


def test_tiny_run_writes_a_consistent_table(tmp_path, monkeypatch):
    small = get_preset("tiny")
    small = dataclasses.replace(small, data=dataclasses.replace(small.data, frames=32, num_videos=12, num_eval_videos=4),
                                model=dataclasses.replace(small.model, grid=(8, 8, 8)))
    monkeypatch.setattr(ablations, "get_preset", lambda name: small)
    monkeypatch.setattr(ablations, "EVAL_FRAMES", (16, 32))
    monkeypatch.setattr(ablations, "QUICK", dict(steps=3, videos=2, tokenizer_steps=2))
    few_calls = dict(steps=4, context_temperature=1000.0, bootstrap=2, revise=1, revise_temperature=1.0)
    monkeypatch.setattr(ablations, "sampling_settings", lambda train, unknown: few_calls)   # a fast decode
    args = types.SimpleNamespace(quick=True, steps=None, videos=None, variants="base", resume=False,
                                 tokenizer=None, work_dir=str(tmp_path / "work"), out_dir=str(tmp_path))
    ablations.run_ablations(args, torch.device("cpu"))                  # as if interrupted after the first variant
    first = json.loads((tmp_path / "ablations-cpu.json").read_text())
    trained = []
    train_variant = ablations.train_variant
    monkeypatch.setattr(ablations, "train_variant", lambda name, *a: trained.append(name) or train_variant(name, *a))
    args.variants, args.resume = "base,context updated", True
    ablations.run_ablations(args, torch.device("cpu"))
    results = json.loads((tmp_path / "ablations-cpu.json").read_text())
    assert trained == ["context updated"]                               # the finished variant was kept, not redone
    assert results["variants"]["base"]["per_clip_ce"] == first["variants"]["base"]["per_clip_ce"]
    args.steps = 4                                                      # other settings: refused, in one line
    with pytest.raises(ValueError, match="--resume: .* other settings \\(steps\\)"):
        ablations.run_ablations(args, torch.device("cpu"))
    assert (tmp_path / "ablations-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results["steps"] == 3 and list(results["variants"]) == ["base", "context updated"]
    base, updated = results["variants"]["base"], results["variants"]["context updated"]
    for row in (base, updated):
        assert set(row["heldout_ce"]) == {"16f", "32f"}
        for frames, by_ratio in row["heldout_ce"].items():
            assert set(by_ratio) == {"0.1", "0.5", "0.9"}
            for ratio, s in by_ratio.items():
                assert s["n"] == 4 and s["ci95"][0] <= s["mean"] <= s["ci95"][1]
                assert abs(s["mean"] - sum(row["per_clip_ce"][frames][ratio]) / 4) < 1e-9
        for metric in ablations.QUALITY:
            q = row["quality"][metric]
            assert q["n"] == 2 and (q["mean"] is None or 0 <= q["ci95"][0] <= q["mean"] <= q["ci95"][1] <= 1)
        assert 0 <= row["quality"]["videos_without_objects"] <= 2
        assert row["train_flops"] > 0 and row["seconds_per_step"] > 0 and row["steps"] == 3
        assert [c["step"] for c in row["curve"]] == [1, 2, 3]            # evaluated along the way
        flops = [c["train_flops"] for c in row["curve"]]
        assert flops == sorted(flops) and abs(flops[-1] - row["train_flops"]) < 1e-6 * flops[-1]
    # the base against itself is exactly 0; the other variant's difference is its own CE minus the base's
    assert base["ce_minus_base"]["32f"]["0.5"]["mean"] == 0
    diff = updated["heldout_ce"]["32f"]["0.5"]["mean"] - base["heldout_ce"]["32f"]["0.5"]["mean"]
    assert abs(updated["ce_minus_base"]["32f"]["0.5"]["mean"] - diff) < 1e-9
    assert updated["parameters"] > base["parameters"] and updated["train_flops"] > base["train_flops"]
    table = ablations.markdown_tables(results)
    assert table.count("| base |") == 2 and table.count("| context updated |") == 2   # one row in each table
    assert f"{base['heldout_ce']['32f']['0.1']['mean']:.3f} [" in table
