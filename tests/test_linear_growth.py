"""MeBT's training cost grows linearly with video length; full attention's does not.

One training step (forward + backward, mask ratio 0.5, batch 1) at 16, 32, 64 and 128 frames
(token grid t = frames / 4 latent frames x h x w). Activation memory = bytes saved for backward,
FLOPs from FlopCounterMode (mebt.profiling.count_train_step), at the tiny width and at the
paper width, on the meta device (exact shapes, no memory, well under a second per count).
On CUDA the peak allocated memory is checked as well.

    python -m pytest -q -s tests/test_linear_growth.py      # -s prints the tables
"""
import pytest
import torch

from mebt.baselines import FullAttentionBaseline
from mebt.config import get_preset
from mebt.model import MeBT, masked_token_loss
from mebt.profiling import count_train_step, masked_batch

FRAMES = (16, 32, 64, 128)
LINEAR = FRAMES[-1] / FRAMES[0]   # 8x the frames


def build(preset: str, device: str):
    cfg = get_preset(preset).model
    torch.manual_seed(0)
    with torch.device(device):
        return cfg, {"MeBT": MeBT(cfg),
                     "full (materialised)": FullAttentionBaseline(cfg, materialize=True),
                     "full (fused)": FullAttentionBaseline(cfg)}


def growth_table(preset: str) -> dict:
    """{model: {frames: dict(flops, saved_bytes)}} on the meta device; prints the 128f / 16f ratios."""
    cfg, models = build(preset, "meta")
    costs = {name: {f: count_train_step(model, masked_batch(cfg, f // 4)) for f in FRAMES}
             for name, model in models.items()}
    print(f"\n{preset} width (d={cfg.d_model}), one step, batch 1, mask ratio 0.5:")
    for name, by_frames in costs.items():
        row = "  ".join(f"{f}f {c['flops'] / 1e9:9.1f} GFLOP {c['saved_bytes'] / 2**20:9.1f} MiB"
                        for f, c in by_frames.items())
        flops, memory = (by_frames[128][k] / by_frames[16][k] for k in ("flops", "saved_bytes"))
        print(f"  {name:20s} {row}   128f/16f: FLOPs x{flops:.2f}, memory x{memory:.2f}")
    return costs


def ratio(costs: dict, name: str, key: str) -> float:
    return costs[name][FRAMES[-1]][key] / costs[name][FRAMES[0]][key]


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_mebt_grows_linearly_full_attention_does_not(preset):
    costs = growth_table(preset)
    for key in ("flops", "saved_bytes"):
        for name in costs:   # every cost grows with the clip
            values = [costs[name][f][key] for f in FRAMES]
            assert values == sorted(values), f"{name} {key} not increasing: {values}"
        mebt = ratio(costs, "MeBT", key)
        assert mebt <= 1.25 * LINEAR, f"MeBT {key} grew x{mebt:.2f} for x{LINEAR:.0f} frames"
        full = ratio(costs, "full (materialised)", key)
        assert full >= 3 * mebt, f"materialised full attention {key} grew only x{full:.2f} (MeBT x{mebt:.2f})"
    # a fused kernel keeps activation memory linear but not the compute: FLOPs stay quadratic
    assert ratio(costs, "full (fused)", "saved_bytes") <= 1.25 * LINEAR
    assert ratio(costs, "full (fused)", "flops") >= 1.5 * LINEAR


def test_meta_counts_equal_cpu_counts():
    """The meta-device shortcut counts exactly what a real CPU step does."""
    cfg, on_meta = build("tiny", "meta")
    _, on_cpu = build("tiny", "cpu")
    for name in ("MeBT", "full (materialised)", "full (fused)"):
        batch = masked_batch(cfg, 4)   # 16 frames
        assert count_train_step(on_meta[name], batch) == count_train_step(on_cpu[name], batch), name


def test_saved_bytes_count_activations_not_weights():
    """Doubling the batch doubles the saved activations; the weights (8 MiB here) are not counted."""
    cfg, models = build("tiny", "meta")
    one, two = (count_train_step(models["MeBT"], masked_batch(cfg, 4, batch_size=b)) for b in (1, 2))
    assert abs(two["saved_bytes"] - 2 * one["saved_bytes"]) <= 16   # up to the loss's few scalars
    assert two["flops"] == 2 * one["flops"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_peak_memory_grows_linearly():
    cfg, models = build("tiny", "cuda")
    peaks = {}
    for name in ("MeBT", "full (materialised)"):
        model = models[name]
        for frames in FRAMES:
            inputs, targets = masked_batch(cfg, frames // 4, batch_size=4)(torch.device("cuda"))
            masked_token_loss(model(*inputs), targets).backward()   # warm-up: cuBLAS workspaces, gradients exist
            model.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            start = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            masked_token_loss(model(*inputs), targets).backward()
            torch.cuda.synchronize()
            peaks[name, frames] = torch.cuda.max_memory_allocated() - start   # activations + gradients at peak
            model.zero_grad(set_to_none=True)
    mebt = peaks["MeBT", 128] / peaks["MeBT", 16]
    full = peaks["full (materialised)", 128] / peaks["full (materialised)", 16]
    print(f"\nCUDA peak step memory 128f/16f: MeBT x{mebt:.2f}, full (materialised) x{full:.2f}")
    assert mebt <= 1.25 * LINEAR
    assert full >= 3 * mebt
