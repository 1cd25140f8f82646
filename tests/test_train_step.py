"""What makes the training step fast on a GPU, proven on the CPU: no host sync in a step, a bounded number of
compiled graphs, a float32 loss under bf16, one window length per step on every rank.

    python -m pytest -q tests/test_train_step.py
"""
import torch
import torch.nn.functional as F
from test_train import micro_config
from torch._dynamo.utils import counters
from torch.overrides import TorchFunctionMode

import mebt.train_transformer as train_transformer_module
from mebt.curriculum import Curriculum
from mebt.distributed import shared_generator, step_generator
from mebt.model import MeBT, masked_token_loss
from mebt.pipeline import autocast
from mebt.train_tokenizer import train_tokenizer
from mebt.train_transformer import NonFiniteWatch, compile_model, train_step, training_batch


def micro_batches(steps: int, seed: int = 0, rank: int = 0):
    """The batches train_transformer would draw in its first `steps` steps (curriculum on: T changes too)."""
    cfg = micro_config(transformer_steps=steps)
    cache = torch.randint(cfg.model.vocab_size, (6, *cfg.model.grid), generator=torch.Generator().manual_seed(seed))
    schedule = Curriculum.from_total_steps(cfg.model.grid[0], steps, full_at=0.5)
    return cfg, [training_batch(cache, s, schedule, cfg, step_generator(seed, s, rank), shared_generator(seed, s))
                 for s in range(steps)]


def test_a_training_step_reads_no_value_back_from_the_device():
    """On the meta device a tensor has no values: .item(), int(), bool(), aminmax + int, nonzero... all raise. So
    if forward, loss, backward, clipping, the optimiser and the finiteness record run there, none of them makes the
    host wait for the GPU. (The optimiser's step counters are CPU tensors: host-side, as on CUDA.)"""
    cfg, batches = micro_batches(3)
    with torch.device("meta"):
        model = MeBT(cfg.model)
    optimizer = torch.optim.AdamW(model.optim_groups(0.01), lr=1e-3)
    meta, watch = torch.device("meta"), NonFiniteWatch(torch.device("meta"))
    for step, batch in enumerate(batches, start=1):
        loss, grad_norm = train_step(model, optimizer, batch, 1e-3, 1.0, meta, "fp32")
        watch.update(step, loss, grad_norm)
    assert loss.device.type == grad_norm.device.type == "meta" and loss.shape == ()
    assert all(p.device.type == "meta" and p.grad is not None for p in model.parameters())   # every layer trained


class DeviceReads(TorchFunctionMode):
    """Counts every way of reading a tensor's values on the host, per training step (paused where told)."""

    READS = {"item", "tolist", "numpy", "cpu", "nonzero", "aminmax", "__bool__", "__int__", "__float__",
             "__index__", "__format__"}

    def __init__(self):
        super().__init__()
        self.step, self.paused, self.reads = None, 0, {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.READS and not self.paused and self.step is not None:
            self.reads.setdefault(self.step + 1, []).append(name)   # keyed by `done`, the step just trained
        return func(*args, **(kwargs or {}))


def test_the_training_loop_reads_the_device_only_every_log_every_steps(tmp_path, monkeypatch):
    cfg = micro_config(transformer_steps=12, eval_every=100)          # held-out CE and checkpoint at step 12 only
    train_tokenizer(cfg, str(tmp_path))
    reads = DeviceReads()

    def pause(fn, track_step=False):
        def run(*args, **kwargs):
            if track_step:
                reads.step = args[1]                                 # training_batch(cache, step, ...)
            reads.paused += 1
            try:
                return fn(*args, **kwargs)
            finally:
                reads.paused -= 1
        return run
    # drawing the batch is host work by design (CPU generators); train_step is proven sync-free above
    monkeypatch.setattr(train_transformer_module, "training_batch", pause(training_batch, track_step=True))
    monkeypatch.setattr(train_transformer_module, "train_step", pause(train_step))
    monkeypatch.setattr(train_transformer_module, "LOG_EVERY", 4)
    with reads:
        train_transformer_module.train_transformer(cfg, str(tmp_path))
    assert set(reads.reads) == {4, 8, 12}, reads.reads               # the log steps (12: also eval + save), no other
    assert "item" in reads.reads[4]                                  # the counter does see the loop's reads


def test_compiled_training_compiles_one_graph_for_every_window_and_split():
    """T, Nc and Nm change every step; with symbolic sizes one graph serves them all. Dynamo would specialise
    sizes 0 and 1, which the masking never produces (both sides >= 2)."""
    cfg, batches = micro_batches(16)
    sizes = {(b[1].shape[1], b[2].shape[1]) for b in batches}
    assert len(sizes) >= 8 and len({nc + nm for nc, nm in sizes}) >= 3   # many shapes, several window lengths
    assert min(min(s) for s in sizes) >= 2
    torch.manual_seed(0)
    model = MeBT(cfg.model)
    optimizer = torch.optim.AdamW(model.optim_groups(0.01), lr=1e-3)
    torch._dynamo.reset()
    counters.clear()
    compiled = compile_model(model, backend="eager")                  # the same graphs as inductor, no codegen
    for batch in batches:
        train_step(compiled, optimizer, batch, 1e-3, 1.0, torch.device("cpu"), "fp32")
    assert not counters["graph_break"], dict(counters["graph_break"])  # no host reads inside forward either
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    torch._dynamo.reset()


def test_loss_is_float32_under_bf16_autocast():
    cfg, batches = micro_batches(1)
    torch.manual_seed(0)
    model = MeBT(cfg.model)
    context, context_pos, target_pos, targets = batches[0]
    with autocast(torch.device("cpu"), "bf16"):
        logits = model(context, context_pos, target_pos)
    assert logits.dtype == torch.bfloat16                             # the matmuls did run in bf16
    loss = masked_token_loss(logits, targets)
    assert loss.dtype == torch.float32
    assert loss == F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
    assert F.cross_entropy(logits.flatten(0, 1), targets.flatten()).dtype == torch.bfloat16   # what it fixes
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss, grad_norm = train_step(model, optimizer, batches[0], 1e-3, 1.0, torch.device("cpu"), "bf16")
    assert loss.dtype == grad_norm.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights and optimiser state stay fp32


def test_every_rank_trains_on_the_same_window_length_with_its_own_clips_and_masks():
    _, rank0 = micro_batches(12, rank=0)
    _, rank1 = micro_batches(12, rank=1)
    lengths = [b[1].shape[1] + b[2].shape[1] for b in rank0]
    assert lengths == [b[1].shape[1] + b[2].shape[1] for b in rank1]   # T*h*w: the same at every step
    assert len(set(lengths)) >= 3                                       # ... while the curriculum varies it
    assert all(not torch.equal(a[2], b[2]) for a, b in zip(rank0, rank1) if a[2].shape == b[2].shape)   # targets
    assert sum(a[2].shape != b[2].shape for a, b in zip(rank0, rank1)) >= 3   # mask ratios drawn per rank too
