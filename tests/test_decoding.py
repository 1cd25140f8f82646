"""Iterative masked decoding, checked with small stand-in models that record every call."""
import math

import pytest
import torch
import torch.nn as nn

from mebt.decoding import cosine_schedule, decode


class TableModel(nn.Module):
    """Logits depend only on the target position: table[pos] (N, V). Records every call."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone(), requires_grad=False)
        self.calls = []   # (context_tokens, context_pos, target_pos, training flag, grad enabled)

    def forward(self, context_tokens, context_pos, target_pos):
        self.calls.append((context_tokens.clone(), context_pos.clone(), target_pos.clone(),
                           self.training, torch.is_grad_enabled()))
        return self.table[target_pos]                                   # (B, Nm, V)


class ShiftingModel(TableModel):
    """A different argmax at every call: token (7 * call + pos) % V wins by a wide margin."""

    def forward(self, context_tokens, context_pos, target_pos):
        call = len(self.calls)
        super().forward(context_tokens, context_pos, target_pos)
        vocab = self.table.shape[1]
        return 10.0 * nn.functional.one_hot((7 * call + target_pos) % vocab, vocab).float()


# decode() has no defaults for the settings a preset tunes; these tests use the main loop alone unless they say
PLAIN = dict(steps=32, context_temperature=4.0, bootstrap=0, revise=0, revise_temperature=0.7)


def run_decode(model, batch_size, grid, **kwargs):
    return decode(model, batch_size, grid, **{**PLAIN, **kwargs})


def random_table(n, vocab, seed=0):
    return torch.randn(n, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_schedule_is_monotone_ends_at_zero_and_reveals_every_step():
    for n in (1, 2, 5, 31, 32, 33, 100, 8192):
        for steps in (1, 2, 8, 32):
            counts = cosine_schedule(n, steps)
            assert 1 <= len(counts) <= steps and counts[-1] == 0
            assert all(a > b for a, b in zip([n] + counts, counts))   # starts at n, >= 1 revealed per step
            if n >= steps:
                assert len(counts) == steps
    assert cosine_schedule(0, 4) == []
    assert cosine_schedule(10, 3) == [9, 5, 0]                         # ceil(cos(pi/3)*10) = 5 despite float noise
    counts = cosine_schedule(8192, 32)                                 # large n: the unclamped cosine formula
    assert counts[:-1] == [math.ceil(math.cos(math.pi / 2 * k / 32) * 8192) for k in range(1, 32)]


def test_each_step_reveals_the_scheduled_count_with_one_call_per_step():
    grid, B, steps = (2, 3, 4), 2, 5
    model = TableModel(random_table(24, 16))
    tokens, history = run_decode(model, B, grid, steps=steps, generator=torch.Generator().manual_seed(0),
                             return_history=True)
    schedule = cosine_schedule(24, steps)
    assert len(model.calls) == len(schedule) == steps
    assert [call[2].shape[1] for call in model.calls] == [24] + schedule[:-1]   # targets = still masked
    assert tokens.shape == (B, *grid) and tokens.min() >= 0 and tokens.max() < 16
    revealed = [24 - c for c in [24] + schedule]
    for k in range(1, steps + 1):                                      # exactly the scheduled count at step k
        assert ((history == k).sum(dim=1) == revealed[k] - revealed[k - 1]).all()
    assert history.min() >= 1                                          # every position revealed exactly once


def test_call_count_with_bootstrap_and_revise():
    grid, steps, bootstrap, revise = (2, 4, 4), 6, 3, 2
    model = TableModel(random_table(32, 8))
    _, history = run_decode(model, 3, grid, steps=steps, bootstrap=bootstrap, revise=revise,
                        generator=torch.Generator().manual_seed(1), return_history=True)
    assert len(model.calls) == bootstrap + steps + 2 * revise
    for k in range(1, bootstrap + 1):                                  # bootstrap: one token per step per sample
        assert ((history == k).sum(dim=1) == 1).all()
        assert model.calls[k - 1][2].shape[1] == 32 - (k - 1)          # all unknown positions are targets
    main = cosine_schedule(32 - bootstrap, steps)
    assert [(history == bootstrap + k).sum(dim=1)[0].item() for k in range(1, steps + 1)] == \
        [a - b for a, b in zip([32 - bootstrap] + main, main)]


def test_top1_and_zero_temperature_are_argmax_and_deterministic():
    table = random_table(24, 16, seed=3)
    expected = table.argmax(dim=1).view(1, 2, 3, 4).expand(2, -1, -1, -1)
    for kwargs in (dict(top_k=1, temperature=1.0), dict(top_k=1, temperature=1e-4), dict(temperature=0.0)):
        for seed in (0, 1):
            tokens = run_decode(TableModel(table), 2, (2, 3, 4), steps=4, generator=torch.Generator().manual_seed(seed),
                            **kwargs)
            assert torch.equal(tokens, expected), kwargs


def test_sampling_follows_softmax_with_temperature_and_top_k():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])                     # a single position, V = 4
    g = torch.Generator().manual_seed(4)
    for temperature, top_k in ((1.0, None), (2.0, None), (1.0, 2)):
        tokens = run_decode(TableModel(logits), 20000, (1, 1, 1), steps=1, temperature=temperature, top_k=top_k,
                        generator=g).flatten()
        freq = torch.bincount(tokens, minlength=4).float() / tokens.numel()
        scaled = logits[0] / temperature
        if top_k is not None:
            scaled[top_k:] = float("-inf")                             # the logits are sorted: keep the first k
        assert torch.allclose(freq, scaled.softmax(0), atol=0.015), (temperature, top_k)


def test_most_confident_targets_are_kept_first():
    # position p is predicted with a confidence that grows with p; no noise -> higher p is revealed earlier
    n = 16
    table = torch.zeros(n, 5)
    table[:, 0] = torch.arange(n) * 0.5
    _, history = run_decode(TableModel(table), 1, (1, 4, 4), steps=4, temperature=0.0, context_temperature=0.0,
                        return_history=True)
    assert (history[0].diff() <= 0).all() and history[0, 0] > history[0, -1]


def test_random_order_keeps_the_model_frequencies_and_confidence_order_squeezes_out_rare_tokens():
    # a context-free model: every position is "background" (token 0) with p = 0.7, else one of 3 object tokens.
    # A correct sampler gives 30% object tokens. Keeping the most confident samples first commits background
    # everywhere and leaves objects only the last few holes: the bias that emptied our videos at tau_0 = 4.
    table = torch.tensor([0.7, 0.1, 0.1, 0.1]).log().expand(256, 4).clone()
    def object_fraction(context_temperature):
        tokens = run_decode(TableModel(table), 8, (4, 8, 8), steps=8, context_temperature=context_temperature,
                        generator=torch.Generator().manual_seed(0))
        return (tokens != 0).float().mean().item()                     # over 8 * 256 = 2048 tokens
    assert abs(object_fraction(1000.0) - 0.3) < 0.03                   # binomial sd ~0.01
    assert object_fraction(4.0) < 0.2 and object_fraction(0.0) < 0.1


def test_fixed_seed_reproduces_a_sample():
    table = torch.zeros(24, 32)                                        # uniform logits: all randomness is ours
    run = lambda seed: run_decode(TableModel(table), 2, (2, 3, 4), steps=4, bootstrap=2, revise=1,
                              generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_given_tokens_are_context_from_the_start_and_never_change():
    N, V = 24, 16
    given = torch.full((2, N), -1)
    given[:, :8] = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(6))   # the first latent frame
    model = ShiftingModel(random_table(N, V))
    tokens, history = run_decode(model, 2, (3, 2, 4), steps=4, bootstrap=1, revise=1, given=given,
                             generator=torch.Generator().manual_seed(7), return_history=True)
    assert torch.equal(tokens.view(2, N)[:, :8], given[:, :8])
    assert (history[:, :8] == 0).all() and (history[:, 8:] >= 1).all()
    context_tokens, context_pos, target_pos, _, _ = model.calls[0]
    assert torch.equal(context_pos, torch.arange(8).expand(2, 8)) and torch.equal(context_tokens, given[:, :8])
    for _, context_pos, target_pos, _, _ in model.calls:               # given positions are never targets
        assert (target_pos >= 8).all()


def test_revise_resamples_each_half_of_the_free_positions_given_the_rest():
    N, V = 24, 16
    given = torch.full((2, N), -1)
    given[:, :6] = 3
    model = ShiftingModel(random_table(N, V))
    tokens = run_decode(model, 2, (2, 3, 4), steps=3, revise=1, revise_temperature=0.0, temperature=0.0,
                    given=given, generator=torch.Generator().manual_seed(8)).view(2, N)
    assert len(model.calls) == 3 + 2
    (_, ctx_a, half_a, _, _), (_, ctx_b, half_b, _, _) = model.calls[3:]
    for b in range(2):
        halves = torch.cat([half_a[b], half_b[b]])
        assert torch.equal(halves.sort().values, torch.arange(6, N))   # the halves partition the free positions
        assert abs(half_a.shape[1] - half_b.shape[1]) <= 1
        for ctx, half in ((ctx_a, half_a), (ctx_b, half_b)):           # context = everything else, given included
            assert torch.equal(torch.cat([ctx[b], half[b]]).sort().values, torch.arange(N))
    # every free token is the argmax of the revise pass that covered it; the draft's argmax differed
    assert torch.equal(tokens.gather(1, half_a), (7 * 3 + half_a) % V)
    assert torch.equal(tokens.gather(1, half_b), (7 * 4 + half_b) % V)
    assert (tokens[:, :6] == 3).all()


def test_model_runs_in_eval_mode_without_grad_and_its_flag_is_restored():
    model = TableModel(random_table(8, 4))
    model.train()
    run_decode(model, 1, (1, 2, 4), steps=2, revise=1)
    assert model.training
    assert all(not training and not grad for *_, training, grad in model.calls)
    model.eval()
    run_decode(model, 1, (1, 2, 4), steps=2)
    assert not model.training


def test_progress_bar_and_parameter_free_model(capsys):
    class Uniform(nn.Module):
        def forward(self, context_tokens, context_pos, target_pos):
            return torch.zeros(*target_pos.shape, 3)
    tokens = run_decode(Uniform(), 2, (1, 2, 2), steps=2, progress=True)
    assert tokens.shape == (2, 1, 2, 2) and "decode" in capsys.readouterr().err


def test_bad_inputs_raise():
    model = TableModel(random_table(8, 4))
    with pytest.raises(ValueError, match="steps"):
        run_decode(model, 1, (1, 2, 4), steps=0)
    with pytest.raises(ValueError, match="given"):
        run_decode(model, 2, (1, 2, 4), given=torch.full((2, 7), -1))
    with pytest.raises(ValueError, match="given"):
        run_decode(model, 2, (1, 2, 4), given=torch.tensor([[0] + [-1] * 7, [-1] * 8]))   # unequal known counts
    with pytest.raises(ValueError, match="bootstrap"):
        run_decode(model, 1, (1, 2, 4), bootstrap=9)
    with pytest.raises(ValueError, match="top_k"):
        run_decode(model, 1, (1, 2, 4), top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        run_decode(model, 1, (1, 2, 4), temperature=-1)
    with pytest.raises(ValueError, match="grid"):
        run_decode(model, 1, (2, 4))

    class WrongShape(nn.Module):
        def forward(self, context_tokens, context_pos, target_pos):
            return torch.zeros(target_pos.shape[0], 1, 4)              # one row of logits whatever Nm is
    with pytest.raises(ValueError, match="logits"):
        run_decode(WrongShape(), 1, (1, 2, 4))


def test_decodes_with_a_tiny_real_mebt():
    from mebt.config import ModelConfig
    from mebt.model import MeBT
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=16, grid=(2, 2, 4), d_model=32, n_heads=2, n_latents=4,
                      encoder_layers=("cross", "self", "cross"), decoder_layers=("read", "write", "read"))
    model = MeBT(cfg).train()
    given = torch.full((2, 16), -1)
    given[:, :8] = torch.arange(8) % 16                                # the first latent frame is known
    run = lambda: run_decode(model, 2, cfg.grid, steps=4, top_k=4, bootstrap=2, revise=1, given=given,
                         generator=torch.Generator().manual_seed(3), return_history=True)
    (tokens, history), (again, _) = run(), run()
    assert torch.equal(tokens, again) and model.training
    assert tokens.min() >= 0 and tokens.max() < 16
    assert torch.equal(tokens.view(2, 16)[:, :8], given[:, :8]) and (history[:, 8:] >= 1).all()
    short = run_decode(model, 1, (1, 2, 4), steps=3)                       # a shorter grid uses the first frames' positions
    assert short.shape == (1, 1, 2, 4)


def test_decoding_settings_come_from_the_config_only():
    """decode() has no defaults a preset tunes (a default here once decoded the tiny model in the paper's order);
    sampling_settings hands it every sample_* field of the config, and they fully determine the call count."""
    from dataclasses import fields, replace

    from mebt.config import TrainConfig
    from mebt.pipeline import sampling_settings
    model = TableModel(random_table(32, 8))
    with pytest.raises(TypeError, match="context_temperature"):
        decode(model, 1, (2, 4, 4), steps=4)
    tc = TrainConfig()
    sample_fields = [f.name for f in fields(TrainConfig) if f.name.startswith("sample_") and f.name != "sample_every"]
    for name in sample_fields:                                       # each stored setting reaches decode()
        value = getattr(tc, name)
        changed = replace(tc, **{name: value + 1 if isinstance(value, int) else value / 2})
        assert sampling_settings(changed, 10**6) != sampling_settings(tc, 10**6), name
    settings = sampling_settings(replace(tc, sample_steps=5, sample_bootstrap=3, sample_revise=2), 32)
    decode(model, 1, (2, 4, 4), **settings)
    assert len(model.calls) == 3 + 5 + 2 * 2
    assert sampling_settings(tc, 10)["bootstrap"] == min(tc.sample_bootstrap, 10)   # capped at the unknown tokens


def test_top_k_narrows_the_main_loop_only_never_bootstrap_or_revise():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])                     # softmax: p(token 0) = 0.64
    table = logits.expand(256, 4).clone()
    g = torch.Generator().manual_seed(9)
    tokens, history = run_decode(TableModel(table), 8, (1, 16, 16), steps=2, bootstrap=200, top_k=1,
                                 context_temperature=1000.0, generator=g, return_history=True)
    tokens = tokens.flatten(1)
    bootstrap_share = (tokens[history <= 200] != 0).float().mean().item()   # 1600 draws from the full softmax
    assert abs(bootstrap_share - 0.36) < 0.04
    assert (tokens[history > 200] == 0).all()                        # the main loop: top-1 = argmax
    revised = run_decode(TableModel(table), 8, (1, 16, 16), steps=2, top_k=1, revise=1, revise_temperature=1.0,
                         generator=g).flatten(1)
    assert abs((revised != 0).float().mean().item() - 0.36) < 0.04   # revise resamples from the full softmax


def test_generator_must_live_on_the_decoding_device_index_included():
    from types import SimpleNamespace
    model = TableModel(random_table(8, 4))
    on_cuda1 = SimpleNamespace(device=torch.device("cuda", 1))       # checked before anything runs on a GPU
    with pytest.raises(ValueError, match="generator is on cuda:1 but decoding runs on cuda:0"):
        run_decode(model, 1, (1, 2, 4), generator=on_cuda1, device="cuda:0")
    with pytest.raises(ValueError, match="generator is on cpu"):
        run_decode(model, 1, (1, 2, 4), generator=torch.Generator(), device="cuda:0")


def test_given_tokens_and_grid_are_checked_against_the_model_before_it_runs():
    from mebt.config import ModelConfig
    from mebt.model import MeBT
    cfg = ModelConfig(vocab_size=16, grid=(2, 2, 4), d_model=32, n_heads=2, n_latents=4,
                      encoder_layers=("cross",), decoder_layers=("read",))
    given = torch.full((1, 16), -1)
    given[0, 0] = 16                                                 # one past the vocabulary
    with pytest.raises(ValueError, match="given: codebook indices"):
        run_decode(MeBT(cfg), 1, cfg.grid, steps=2, given=given)
    with pytest.raises(ValueError, match="grid=\\(3, 2, 4\\) has 24 positions"):
        run_decode(MeBT(cfg), 1, (3, 2, 4), steps=2)


def test_sharpen_foreground_keeps_p_background_and_raises_the_rest_to_one_over_t():
    from mebt.decoding import sharpen_foreground
    p = torch.tensor([[0.1, 0.1, 0.6, 0.2], [0.05, 0.9, 0.03, 0.02]])        # code 2 is the background
    logits = p.log() + 3.0                                             # any shift: logits, not log-probs
    for t in (0.5, 2.0):
        q = sharpen_foreground(logits, t, 2).softmax(-1)
        rest = p[:, [0, 1, 3]] ** (1 / t)
        rest = rest / rest.sum(-1, keepdim=True) * (1 - p[:, 2:3])      # the rest share what the background leaves
        torch.testing.assert_close(q[:, 2], p[:, 2])
        torch.testing.assert_close(q[:, [0, 1, 3]], rest)
    assert torch.equal(sharpen_foreground(logits, 1.0, 2), logits)     # off: the very same logits, so the same draws
    assert torch.equal(sharpen_foreground(logits, 0.5, None), logits)


def test_foreground_temperature_reshapes_every_draw_bootstrap_main_loop_and_revise():
    from mebt.config import ModelConfig
    from mebt.model import MeBT
    p = torch.tensor([0.1, 0.1, 0.6, 0.2])                             # code 2 is the background
    table = p.log().expand(256, 4).clone()
    rest = torch.tensor([0.1, 0.1, 0.2]) ** 2                          # foreground temperature 0.5
    expected = torch.cat([rest[:2], torch.zeros(1), rest[2:]]) / rest.sum() * 0.4
    expected[2] = 0.6
    g = torch.Generator().manual_seed(11)
    sharp = dict(foreground_temperature=0.5, background_code=2, context_temperature=1000.0, generator=g)
    tokens, history = run_decode(TableModel(table), 40, (1, 16, 16), steps=2, bootstrap=100, return_history=True,
                                 **sharp)
    for name, drawn in (("bootstrap", tokens.flatten(1)[history <= 100]), ("main loop", tokens.flatten(1)[history > 100])):
        freq = torch.bincount(drawn, minlength=4).float() / drawn.numel()
        assert torch.allclose(freq, expected, atol=0.02), name
    revised = run_decode(TableModel(table), 40, (1, 16, 16), steps=1, revise=1, revise_temperature=1.0, **sharp)
    freq = torch.bincount(revised.flatten(), minlength=4).float() / revised.numel()
    assert torch.allclose(freq, expected, atol=0.02)                   # the revise passes too
    with pytest.raises(ValueError, match="foreground_temperature=0"):
        run_decode(TableModel(table), 1, (1, 16, 16), foreground_temperature=0.0, background_code=2)
    cfg = ModelConfig(vocab_size=4, grid=(1, 2, 2), d_model=16, n_heads=2, n_latents=2,
                      encoder_layers=("cross",), decoder_layers=("read",))
    with pytest.raises(ValueError, match="background_code=4: expected a codebook index"):
        run_decode(MeBT(cfg), 1, cfg.grid, foreground_temperature=0.5, background_code=4)
