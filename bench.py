"""Benchmarks: what MeBT costs next to full attention and an autoregressive transformer, and how consistent its
long samples stay on the synthetic data. One command per module of benchmarks/ (see each module's docstring):

    python bench.py efficiency --quick                  # FLOPs / memory / time vs video length (~1 min on a CPU)
    python bench.py quality --ckpt out/mebt.pt          # long-video consistency against baselines, exact
    python bench.py throughput                          # train step time, tokens/s, MFU; one video vs autoregressive
    python bench.py ablations --quick                   # one design choice changed at a time (~1 min per variant)
    python bench.py reachability                        # who can influence whom after 1-2 layers: MeBT vs sparse
    python bench.py data                                # frames/s read with 0/1/2 DataLoader workers, cache build
    python bench.py fvd --i3d i3d_pretrained_400.pt --real DIR --fake samples.npy   # FVD with your own I3D weights

Every command writes JSON (and a plot) under bench/results/ (--out-dir elsewhere). On a CPU PyTorch runs on
--threads threads (default 1): on a shared 2-core machine two intra-op threads were ~40x slower than one,
fighting the other processes for the cores.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks import ablations, data, efficiency, fvd, quality, reachability, throughput
from benchmarks.common import RESULTS

COMMANDS = (efficiency, quality, ablations, reachability, throughput, data, fvd)   # each registers its subcommand


def main(argv=None):
    p = argparse.ArgumentParser(description="MeBT benchmarks (see the docstring of bench.py).")
    sub = p.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    for s in sub.choices.values():   # every command runs somewhere, on some threads, and writes somewhere
        s.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
        s.add_argument("--threads", type=int, default=1, help="CPU threads for PyTorch (see the docstring)")
        s.add_argument("--out-dir", default=RESULTS, help="where the JSON and PNG go")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads}: expected at least 1")
    torch.set_num_threads(args.threads)
    return args.run(args, device)


if __name__ == "__main__":
    main()
