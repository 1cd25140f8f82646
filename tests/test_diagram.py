"""mebt/diagram.py: the picture and the per-layer cost table follow the config, and the counted FLOPs match the
formulas docs/architecture.md derives from them.

    python -m pytest -q tests/test_diagram.py
"""
import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from mebt import diagram
from mebt.config import get_preset
from mebt.model import MeBT
from mebt.profiling import CPU_FLASH_FLOPS, FusedAttentionOnMeta, masked_batch


def test_plan_lists_every_layer_in_order_for_every_preset():
    for name in ("tiny", "small", "paper"):
        cfg = get_preset(name).model
        plan = diagram.layer_plan(cfg)
        assert [layer.kind for layer in plan] == list(cfg.encoder_layers) + list(cfg.decoder_layers)
        assert all(layer.stage == "encoder" for layer in plan[:len(cfg.encoder_layers)])
        assert not any(layer.query == "context" for layer in plan)     # nothing ever writes the context


def test_layer_flops_add_up_and_follow_the_formulas():
    cfg = get_preset("tiny").model
    L, d = cfg.n_latents, cfg.d_model
    rows = diagram.layer_flops(cfg, latent_frames=32, ratio=0.5)
    nc = nm = 1024
    with torch.device("meta"):
        model = MeBT(cfg)
    counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)
    with counter, FusedAttentionOnMeta():
        model(*masked_batch(cfg, 32, 1, 0.5)(torch.device("meta"))[0])
    assert sum(r["total"] for r in rows) == counter.get_total_flops()      # every FLOP belongs to a row
    for r in rows[:-1]:
        kind = r["layer"].kind
        queries, keys = {"cross": (L, nc), "self": (L, L), "read": (nm, L), "write": (L, L + nm)}[kind]
        assert r["scores"] == 4 * queries * keys * d, kind                   # Q K^T and the weighted sum: 2 x 2 N d
        assert r["mlp"] == 2 * 2 * queries * d * cfg.mlp_ratio * d, kind    # two linears, d -> 4d -> d
        # query + output projections on the queries, key/value projections on the keys
        assert r["projections"] == 2 * queries * d * d * 2 + 2 * keys * d * 2 * d, kind
    assert rows[-1]["total"] == 2 * nm * d * cfg.vocab_size                 # the head, on the targets only


def test_draw_writes_one_column_per_layer(tmp_path):
    cfg = dataclasses.replace(get_preset("tiny").model, decoder_layers=("read",))
    plan = diagram.draw(cfg, str(tmp_path / "a.png"))
    assert len(plan) == len(cfg.encoder_layers) + 1
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| **all** |" in diagram.cost_table(cfg, latent_frames=4)
