"""MeBT's architecture, drawn and costed from a real ModelConfig (so the picture cannot drift from the model).

Three streams run through the layers of mebt/encoder.py and mebt/decoder.py:
    context C  (Nc visible tokens)  token + position embeddings; read by the cross layers, never written
    latents Z  (L learned vectors)  the bottleneck: the only stream that sees the whole clip
    targets M  (Nm hidden tokens)   [MASK] + position; they read Z, and write layers let Z read them back
layer_plan(cfg) lists who queries whom in every layer, with the attention cost of that pairing;
layer_flops(cfg, ...) counts each layer's forward FLOPs on the meta device (torch.utils.flop_counter), split into
projections, attention scores and MLP; draw(cfg, path) draws the streams and layers.

Try it:
    python -m mebt.diagram                       # the tiny preset: prints the per-layer table, writes the picture
    python -m mebt.diagram --preset paper --frames 128 --out /tmp/paper.png
"""
from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from mebt.config import ModelConfig, get_preset
from mebt.model import MeBT
from mebt.profiling import CPU_FLASH_FLOPS, FusedAttentionOnMeta, masked_batch

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "figures", "architecture.png")


@dataclass(frozen=True)
class Layer:
    stage: str      # "encoder" or "decoder"
    kind: str       # cross / self / read / write
    query: str      # the stream that asks (and is updated: a block only ever updates its query stream)
    keys: str       # the stream(s) it reads
    cost: str       # query-key pairs scored per head, as a formula

ROLES = {   # kind -> (query, keys, cost): mebt/encoder.py and mebt/decoder.py
    "cross": ("latents", "context", "L·Nc"),
    "self": ("latents", "latents", "L²"),
    "read": ("targets", "latents", "Nm·L"),
    "write": ("latents", "latents+targets", "L·(L+Nm)"),
}


def layer_plan(cfg: ModelConfig) -> list[Layer]:
    """Every layer of the model, in the order the forward pass runs them."""
    stages = [("encoder", k) for k in cfg.encoder_layers] + [("decoder", k) for k in cfg.decoder_layers]
    return [Layer(stage, kind, *ROLES[kind]) for stage, kind in stages]


def layer_flops(cfg: ModelConfig, latent_frames: int | None = None, ratio: float = 0.5) -> list[dict]:
    """Forward FLOPs of every layer for one clip of `latent_frames` (default: the whole grid), `ratio` masked.

    Returns one dict per layer (layer_plan's order) with projections (query, key/value and output linears),
    scores (the attention kernel: Q K^T and the weighted sum), mlp, and total; then one row for the output head."""
    latent_frames = latent_frames or cfg.grid[0]
    with torch.device("meta"):   # shapes only: the paper preset costs no memory
        model = MeBT(cfg)
    inputs, _ = masked_batch(cfg, latent_frames, 1, ratio)(torch.device("meta"))
    counter = FlopCounterMode(display=False, custom_mapping=CPU_FLASH_FLOPS)
    with counter, FusedAttentionOnMeta():   # (not under no_grad: the module tracker needs autograd)
        model(*inputs)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}   # module path -> FLOPs
    get = lambda name: counts.get(name, 0)
    rows = []
    for i, layer in enumerate(layer_plan(cfg)):
        index = i if layer.stage == "encoder" else i - len(cfg.encoder_layers)
        prefix = f"MeBT.{layer.stage}.layers.{index}"
        projections = sum(get(f"{prefix}.attn.{p}") for p in ("query", "key_value", "proj"))
        rows.append(dict(layer=layer, projections=projections, scores=get(f"{prefix}.attn") - projections,
                         mlp=get(f"{prefix}.mlp"), total=get(prefix)))
    rows.append(dict(layer=None, projections=get("MeBT.head"), scores=0, mlp=0, total=get("MeBT.head")))
    return rows


def cost_table(cfg: ModelConfig, latent_frames: int | None = None, ratio: float = 0.5) -> str:
    """layer_flops as a Markdown table (MFLOPs, forward pass, batch 1)."""
    latent_frames = latent_frames or cfg.grid[0]
    n = latent_frames * cfg.grid[1] * cfg.grid[2]
    n_masked = min(max(math.ceil(ratio * n), 1), n)
    lines = [f"Forward MFLOPs of one clip: L = {cfg.n_latents}, d = {cfg.d_model}, N = {n} tokens, "
             f"Nc = {n - n_masked} context, Nm = {n_masked} targets.", "",
             "| # | layer | query (updated) | keys/values | query·key pairs | projections | scores | MLP | total |",
             "|---|---|---|---|---|---|---|---|---|"]
    rows = layer_flops(cfg, latent_frames, ratio)
    for i, r in enumerate(rows):
        m = lambda key, r=r: f"{r[key] / 1e6:,.1f}"
        if r["layer"] is None:
            lines.append(f"| | head | targets | – | – | {m('projections')} | – | – | {m('total')} |")
        else:
            layer = r["layer"]
            lines.append(f"| {i} | {layer.stage} {layer.kind} | {layer.query} | {layer.keys} | {layer.cost} | "
                         f"{m('projections')} | {m('scores')} | {m('mlp')} | {m('total')} |")
    total = sum(r["total"] for r in rows)
    lines.append(f"| | **all** | | | | | | | **{total / 1e6:,.1f}** |")
    return "\n".join(lines)


LANES = {"context": 2.0, "latents": 1.0, "targets": 0.0}   # y of each stream in the picture
COLOURS = {"context": "#3b75af", "latents": "#2ca02c", "targets": "#ef8636"}


def draw(cfg: ModelConfig, path: str, title: str | None = None) -> list[Layer]:
    """Draw the three streams and one column per layer (an arrow from what it reads to what it updates);
    returns the layers drawn (layer_plan(cfg))."""
    import matplotlib
    matplotlib.use("Agg")   # files only, no display
    import matplotlib.pyplot as plt

    plan = layer_plan(cfg)
    fig, ax = plt.subplots(figsize=(1.0 * len(plan) + 3.5, 4.2))
    labels = {"context": "context C\n(Nc visible tokens)\nnever updated", "latents": f"latents Z\n(L = {cfg.n_latents})",
              "targets": "targets M\n(Nm hidden: [MASK]\n+ position)"}
    for stream, y in LANES.items():
        ax.plot([-0.6, len(plan) - 0.4], [y, y], color=COLOURS[stream], lw=6, alpha=0.25, solid_capstyle="round")
        ax.text(-0.8, y, labels[stream], ha="right", va="center", fontsize=9, color=COLOURS[stream])
    for x, layer in enumerate(plan):
        target_y = LANES[layer.query]
        for source in layer.keys.split("+"):
            source_y = LANES[source]
            if source_y == target_y:   # reading its own stream: a small loop
                ax.annotate("", (x + 0.12, target_y + 0.05), (x - 0.12, target_y + 0.05),
                            arrowprops=dict(arrowstyle="->", connectionstyle="arc3,rad=-1.6", color="black", lw=1))
            else:
                ax.annotate("", (x, target_y + (0.09 if source_y > target_y else -0.09)), (x, source_y),
                            arrowprops=dict(arrowstyle="->", color=COLOURS[source], lw=1.6))
        ax.plot([x], [target_y], "s", ms=11, color=COLOURS[layer.query])   # the stream this layer updates
        ax.text(x, -0.45, f"{layer.kind}\n{layer.cost}", ha="center", va="top", fontsize=8)
    n_enc = len(cfg.encoder_layers)
    ax.axvline(n_enc - 0.5, color="grey", ls=":", lw=1)
    ax.text((n_enc - 1) / 2, 2.45, "encoder: the latents read the context", ha="center", fontsize=9)
    ax.text(n_enc + (len(plan) - n_enc - 1) / 2, 2.45, "decoder: targets read the latents; write: latents read back",
            ha="center", fontsize=9)
    ax.text(len(plan) - 0.3, 0.0, "→ LayerNorm,\nLinear: logits\nfor the targets", va="center", fontsize=8)
    ax.set(xlim=(-3.2, len(plan) + 0.9), ylim=(-1.05, 2.7))
    ax.set_axis_off()
    ax.set_title(title or f"MeBT: d = {cfg.d_model}, {cfg.n_heads} heads, L = {cfg.n_latents}; squares: the stream each "
                 "layer updates; below: query·key pairs per head", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return plan


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Draw MeBT's streams and layers, and print the per-layer FLOPs table.")
    p.add_argument("--preset", default="tiny", help="tiny, small or paper (mebt/config.py)")
    p.add_argument("--frames", type=int, default=128, help="video frames of the costed clip (a multiple of 4)")
    p.add_argument("--ratio", type=float, default=0.5, help="mask ratio of the costed clip: Nm = ceil(ratio * N)")
    p.add_argument("--out", default=OUT, help="where the picture goes")
    args = p.parse_args(argv)
    cfg = get_preset(args.preset)
    factor = cfg.tokenizer.temporal_downsample
    if args.frames % factor or not 0 < args.frames // factor <= cfg.model.grid[0]:
        raise SystemExit(f"--frames {args.frames}: expected a multiple of {factor} up to {cfg.model.grid[0] * factor}")
    if not 0 < args.ratio <= 1:
        raise SystemExit(f"--ratio {args.ratio}: expected a mask ratio in (0, 1]")
    print(cost_table(cfg.model, args.frames // factor, args.ratio))
    draw(cfg.model, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
