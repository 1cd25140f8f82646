"""`python bench.py reachability`: which tokens can influence which, after one and two layers, for dense attention
through MeBT's latents and for the sparse patterns other video transformers use instead.

On the tiny preset's token grid (t, h, w) = (32, 8, 8) (2,048 tokens, 128 frames):
    full       every token attends to every token                                   N keys per query
    axial      the tokens on the same time line, row or column as the query           t + h + w - 2
    windowed   the tokens within +-2 latent frames, rows and columns (a 5x5x5 box)    <= 125
    strided    the query's own latent frame, plus its (row, column) in the 3 latent frames either side and in
               every 4th latent frame (Sparse Transformer's local + strided heads, along time)
    mebt       through the L latents: context -> latents -> targets                   L per token
For the sparse patterns the reach after k layers is exact set arithmetic (k hops of the pattern). For MeBT it is
*measured* by autograd on a randomly initialised model (mebt/model.py): a token can influence a prediction iff
the gradient of that prediction's logits with respect to the token's embedding is non-zero. The same measurement
shows what the decoder's write layers add: with them a target's prediction depends on where the other targets
are; a read-only decoder predicts every target on its own.

    python bench.py reachability           # a few seconds
Writes bench/results/reachability-<device>.{json,png} (--out-dir elsewhere).
"""
from __future__ import annotations

import dataclasses
import math
import os

import torch

from benchmarks.common import write_json
from mebt.config import get_preset
from mebt.masking import sample_split
from mebt.model import MeBT

PATTERNS = ("full", "axial", "windowed", "strided")
WINDOW_RADIUS = 2     # windowed: +-2 latent frames (+-8 video frames), rows and columns
TIME_STRIDE = 4       # strided: every 4th latent frame (16 video frames apart)
MAX_LAYERS = 64       # stop counting layers-to-reach-everything here


def neighbours(pattern: str, grid: tuple[int, int, int]) -> torch.Tensor:
    """(N, N) bool: keys[q, k] is True iff query token q attends to token k in one layer of `pattern`."""
    t, h, w = grid
    ti, hi, wi = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    ti, hi, wi = ti.flatten(), hi.flatten(), wi.flatten()                     # (N,) coordinates of each token
    same_t, same_h, same_w = (ti[:, None] == ti), (hi[:, None] == hi), (wi[:, None] == wi)   # (N, N) each
    if pattern == "full":
        return torch.ones(len(ti), len(ti), dtype=torch.bool)
    if pattern == "axial":      # one line along each axis through the query
        return (same_h & same_w) | (same_t & same_w) | (same_t & same_h)
    if pattern == "windowed":   # a box around the query
        near = lambda a: (a[:, None] - a).abs() <= WINDOW_RADIUS
        return near(ti) & near(hi) & near(wi)
    if pattern == "strided":    # the whole own frame, plus the same spot nearby in time and every TIME_STRIDE frames
        dt = ti[:, None] - ti
        return same_t | (same_h & same_w & ((dt.abs() < TIME_STRIDE) | (dt % TIME_STRIDE == 0)))
    raise ValueError(f"pattern {pattern!r}: expected one of {', '.join(PATTERNS)}")


def reach(keys: torch.Tensor, query: int, layers: int) -> list[int]:
    """Number of tokens that can influence token `query` after 1..layers layers of the pattern `keys` (N, N)."""
    frontier = torch.zeros(len(keys), dtype=torch.bool)
    frontier[query] = True                                    # 0 layers: a token only knows itself
    counts = []
    for _ in range(layers):
        frontier = (keys[frontier].any(0)) | frontier         # one more hop: everything a reached token attends to
        counts.append(int(frontier.sum()))
    return counts


def layers_to_reach_all(keys: torch.Tensor, query: int) -> int | None:
    counts = reach(keys, query, MAX_LAYERS)
    return next((k + 1 for k, c in enumerate(counts) if c == len(keys)), None)


def mebt_influence(decoder_layers: tuple[str, ...], grid: tuple[int, int, int], seed: int = 0) -> dict:
    """Measured on a random MeBT (one cross layer, then `decoder_layers`), half of the clip masked: how many context
    tokens and how many *other* targets change the logits of one target (non-zero gradient)."""
    cfg = dataclasses.replace(get_preset("tiny").model, grid=grid, encoder_layers=("cross",),
                              decoder_layers=decoder_layers)
    torch.manual_seed(seed)
    model = MeBT(cfg).eval()
    n = math.prod(grid)
    g = torch.Generator().manual_seed(seed)
    context_pos, target_pos = sample_split(torch.arange(n)[None], "uniform", g, ratio=0.5)   # (1, Nc), (1, Nm)
    tokens = torch.randint(cfg.vocab_size, (1, n), generator=g)
    context, targets = model.embed(tokens.gather(1, context_pos), context_pos, target_pos)  # (1, Nc, d), (1, Nm, d)
    context, targets = context.detach().requires_grad_(), targets.detach().requires_grad_()
    logits = model.head(model.ln_f(model.decoder(model.encoder(context), targets)))        # (1, Nm, V)
    logits[0, 0].sum().backward()                             # the first target's prediction
    moved = lambda grad: grad[0].abs().sum(-1) > 0            # (n,) did this token's embedding matter?
    other_targets = moved(targets.grad)
    return dict(context_tokens=context_pos.shape[1], context_influencing=int(moved(context.grad).sum()),
                other_targets=target_pos.shape[1] - 1, other_targets_influencing=int(other_targets[1:].sum()))


def run_reachability(args, device: torch.device) -> dict:
    grid = tuple(get_preset("tiny").model.grid)
    t, h, w = grid
    n = math.prod(grid)
    corner, centre = 0, ((t // 2) * h + h // 2) * w + w // 2   # the first frame's corner token, the clip's centre
    results = dict(grid=list(grid), tokens=n, patterns={})
    for pattern in PATTERNS:
        keys = neighbours(pattern, grid)
        results["patterns"][pattern] = dict(
            keys_per_query=float(keys.sum(1).float().mean()), reach_from_corner=reach(keys, corner, 2),
            reach_from_centre=reach(keys, centre, 2), layers_to_reach_all_from_corner=layers_to_reach_all(keys, corner))
    base = get_preset("tiny").model
    results["mebt"] = dict(latents=base.n_latents, keys_per_query=base.n_latents,
                           read_write=mebt_influence(("read", "write", "read"), grid),
                           read_only=mebt_influence(("read",), grid))
    path = os.path.join(args.out_dir, f"reachability-{device.type}.json")
    write_json(path, results)
    print(f"grid {grid}: {n} tokens; tokens that can influence a token after 1 / 2 layers (from the first frame's "
          f"corner), and layers until all {n} can")
    for pattern, r in results["patterns"].items():
        print(f"  {pattern:9s} {r['keys_per_query']:7.1f} keys per query   reach {r['reach_from_corner'][0]:5d} / "
              f"{r['reach_from_corner'][1]:5d} (from the centre {r['reach_from_centre'][0]} / "
              f"{r['reach_from_centre'][1]})   all after {r['layers_to_reach_all_from_corner']} layer(s)")
    for name, label in (("read_write", "read/write"), ("read_only", "read-only")):
        m = results["mebt"][name]
        print(f"  mebt ({label} decoder, measured): one target depends on "
              f"{m['context_influencing']} of {m['context_tokens']} context tokens and "
              f"{m['other_targets_influencing']} of {m['other_targets']} other targets")
    plot_reachability(results, os.path.join(args.out_dir, f"reachability-{device.type}.png"))
    print(f"wrote {path} and its .png")
    return results


def plot_reachability(results: dict, path: str) -> None:
    """The tokens that can influence the first frame's corner token after 1 and 2 layers, per pattern."""
    import matplotlib
    matplotlib.use("Agg")   # files only, no display
    import matplotlib.pyplot as plt

    t, h, w = results["grid"]
    per_row = 8                                               # latent frames per row of the picture
    fig, axes = plt.subplots(len(PATTERNS), 2, figsize=(10, 2.6 * len(PATTERNS)))
    for row, pattern in zip(axes, PATTERNS):
        keys = neighbours(pattern, (t, h, w))
        frontier = torch.zeros(len(keys), dtype=torch.bool)
        frontier[0] = True
        for k, ax in enumerate(row, start=1):
            frontier = keys[frontier].any(0) | frontier
            state = frontier.float()
            state[0] = 2                                      # the query itself
            # (t, h, w) -> rows of `per_row` latent frames side by side: (t/per_row * h, per_row * w)
            tiles = state.view(t // per_row, per_row, h, w).permute(0, 2, 1, 3).reshape(t // per_row * h, per_row * w)
            ax.imshow(tiles.numpy(), cmap=matplotlib.colors.ListedColormap(["#e6e6e6", "#3b75af", "#d62728"]),
                      vmin=0, vmax=2, interpolation="nearest")
            for x in range(w, per_row * w, w):
                ax.axvline(x - 0.5, color="white", lw=1)
            for y in range(h, t // per_row * h, h):
                ax.axhline(y - 0.5, color="white", lw=2)
            ax.set_axis_off()
            ax.set_title(f"{pattern}, {k} layer{'s' if k > 1 else ''}: {int(frontier.sum())} of {len(keys)} tokens",
                         fontsize=9, loc="left")
    fig.suptitle(f"tokens that can influence the red one ({t} latent frames of {h}x{w} tokens, {per_row} per row);\n"
                 "MeBT: every token, after one cross and one read layer", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("reachability", help="which tokens can influence which after 1-2 layers: MeBT vs sparse")
    p.set_defaults(run=run_reachability)
