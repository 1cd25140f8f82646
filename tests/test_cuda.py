"""The CUDA paths of training and sampling, on a real GPU (skipped where CUDA is absent: the one legitimate skip).

bf16 + compiled training steps (finite, falling loss, no host sync), CPU and GPU logits on the same weights,
reproducible decoding with a CUDA generator, checkpoints written on the GPU read on the CPU, and exact resume.
scripts/gpu_check.sh runs this file first; on its own:
    python -m pytest -q tests/test_cuda.py
"""
import json
import shutil

import pytest
import torch
from test_train import assert_same_weights, micro_config, signal_at

import mebt.train_transformer as train_transformer_module
from mebt.checkpoint import load_checkpoint
from mebt.config import get_preset
from mebt.decoding import decode
from mebt.distributed import Dist, Stopped, shared_generator, step_generator
from mebt.model import MeBT
from mebt.pipeline import load_mebt, sampling_settings
from mebt.profiling import masked_batch
from mebt.train_tokenizer import train_tokenizer
from mebt.train_transformer import compile_model, train_step, train_transformer, training_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda", 0)


def test_bf16_compiled_training_steps_have_a_finite_falling_loss_without_a_host_sync():
    from mebt.curriculum import Curriculum
    cfg = get_preset("tiny")
    torch.manual_seed(0)
    model = MeBT(cfg.model).to(CUDA)
    optimizer = torch.optim.AdamW(model.optim_groups(cfg.train.weight_decay), lr=cfg.train.lr, fused=True)
    compiled = compile_model(model)
    cache = torch.randint(cfg.model.vocab_size, (16, *cfg.model.grid), generator=torch.Generator().manual_seed(0))
    schedule = Curriculum.from_total_steps(cfg.model.grid[0], 8, full_at=0.5)
    for step in range(8):   # changing T, Nc and Nm: compiles once (symbolic sizes), then reuses the graph
        batch = training_batch(cache, step, schedule, cfg, step_generator(0, step), shared_generator(0, step))
        train_step(compiled, optimizer, batch, cfg.train.lr, cfg.train.grad_clip, CUDA, "bf16")
    (_, context_pos, target_pos), _ = masked_batch(cfg.model, cfg.model.grid[0], batch_size=8)("cpu")
    vocab = cfg.model.vocab_size   # one full-length batch whose tokens follow from their positions: learnable
    batch = (context_pos % vocab, context_pos, target_pos, target_pos % vocab)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")   # any host sync inside a step now raises
    try:
        losses = [train_step(compiled, optimizer, batch, cfg.train.lr, cfg.train.grad_clip, CUDA, "bf16")[0]
                  for _ in range(30)]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    losses = torch.stack(losses).tolist()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses   # it learns the batch (CPU: 5.6 -> 2.1)


def test_fp32_logits_on_the_gpu_equal_the_cpu_ones_with_and_without_context():
    cfg = get_preset("tiny").model
    torch.manual_seed(0)
    model = MeBT(cfg).eval()
    (context, context_pos, target_pos), _ = masked_batch(cfg, cfg.grid[0], batch_size=2)("cpu")
    empty = context[:, :0]                                         # decoding's first call: nothing visible yet
    with torch.no_grad():
        for split in ((context, context_pos, target_pos), (empty, empty, target_pos)):
            cpu = model(*split)
            gpu = model.to(CUDA)(*(t.to(CUDA) for t in split)).cpu()
            model.cpu()
            assert torch.isfinite(gpu).all()
            torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_decoding_on_the_gpu_with_a_gpu_generator_is_reproducible():
    cfg = micro_config()
    torch.manual_seed(0)
    model = MeBT(cfg.model).to(CUDA)
    settings = sampling_settings(cfg.train, cfg.model.n_positions)
    run = lambda seed, device="cuda": decode(model, 2, cfg.model.grid, device=device, top_k=8,
                                             generator=torch.Generator(CUDA).manual_seed(seed), **settings)
    first = run(0)
    assert first.device == CUDA and torch.equal(first, run(0, device=CUDA))   # "cuda" means cuda:0 here
    assert not torch.equal(first, run(1))
    with pytest.raises(ValueError, match="generator is on cpu"):
        decode(model, 1, cfg.model.grid, generator=torch.Generator(), **settings)


@pytest.fixture(scope="module")
def gpu_run(tmp_path_factory):
    """A micro run trained on the GPU, straight through: (its folder, the trained model on the GPU)."""
    out = tmp_path_factory.mktemp("gpu") / "straight"
    cfg = micro_config()
    train_tokenizer(cfg, str(out), dist=Dist(device=CUDA))
    return out, train_transformer(cfg, str(out), dist=Dist(device=CUDA))


def test_a_checkpoint_written_on_the_gpu_loads_on_the_cpu(gpu_run):
    out, gpu_model = gpu_run
    cpu_model, cfg, _ = load_mebt(str(out / "mebt.pt"), "cpu")
    assert_same_weights({k: v.cpu() for k, v in gpu_model.state_dict().items()}, cpu_model.state_dict())
    (context, context_pos, target_pos), _ = masked_batch(cfg.model, cfg.model.grid[0], batch_size=2)("cpu")
    with torch.no_grad():
        gpu = gpu_model(*(t.to(CUDA) for t in (context, context_pos, target_pos))).cpu()
        torch.testing.assert_close(cpu_model(context, context_pos, target_pos), gpu, rtol=1e-4, atol=1e-4)


def test_resume_on_the_gpu_matches_an_uninterrupted_run(gpu_run, tmp_path, monkeypatch):
    out, gpu_model = gpu_run
    cfg = micro_config()
    (tmp_path / "b").mkdir()
    shutil.copy(out / "tokenizer.pt", tmp_path / "b" / "tokenizer.pt")
    signal_at(train_transformer_module, "lr_at", 3, monkeypatch)   # SIGTERM during step 4 (of 6)
    with pytest.raises(Stopped, match="step 4"):
        train_transformer(cfg, str(tmp_path / "b"), dist=Dist(device=CUDA))
    monkeypatch.undo()
    resumed = train_transformer(cfg, str(tmp_path / "b"), resume=True, dist=Dist(device=CUDA))
    assert load_checkpoint(tmp_path / "b" / "mebt.pt", "mebt")["step"] == cfg.train.transformer_steps
    evals = [[(r["step"], r["eval_ce"]) for r in map(json.loads, open(run / "metrics.jsonl")) if "eval_ce" in r]
             for run in (out, tmp_path / "b")]
    assert [s for s, _ in evals[0]] == [s for s, _ in evals[1]] == [3, 6]
    assert [ce for _, ce in evals[1]] == pytest.approx([ce for _, ce in evals[0]], rel=1e-4)
    # the same draws and steps; only the order of floating-point sums in CUDA kernels (atomic adds in backward)
    # may differ, and AdamW turns a tiny gradient difference into up to lr-sized weight differences
    for name, value in gpu_model.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=1e-3, atol=1e-3, msg=name)
