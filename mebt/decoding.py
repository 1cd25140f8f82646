"""Iterative masked decoding (docs/objective-and-decoding.md): a whole token grid in a few dozen parallel steps.

Start with every unknown position masked. Each step runs the network once on the current
(context, targets) split, samples a token for every target, and keeps the most confident ones
(log p + annealed Gumbel noise) as new context, so that the number still masked follows a cosine
schedule down to 0. Optional extras from the MeBT authors: *bootstrap* (reveal a few random tokens
one at a time first) and *draft-and-revise* (resample random halves given the other half).
Given tokens (e.g. the first frames) sit in the context from the start: prediction, interpolation
and in-filling are the same loop.

Which order? With a small context temperature the loop keeps the likeliest tokens first. When one token
dominates (a flat background: 70% of our synthetic tokens) that is the background everywhere, and the few
places left for objects are scattered holes: samples come out nearly empty. A large context temperature
(the tiny preset uses 1000) makes the order random: the model was trained on random masks, and a perfect
model revealing one token per step would then draw exact samples.

Which code? Every draw may keep the model's p(background) and sharpen the other codes among themselves
(sharpen_foreground, off by default): steadier object shapes, fewer shapes and colours.

The decoding settings (steps, context temperature, bootstrap, revise rounds and temperature) have no defaults
here: they are tuned per preset and stored with every checkpoint (TrainConfig.sample_*), and a default in this
file would silently decode a model with another preset's settings. mebt.pipeline.sampling_settings turns a
config into the keyword arguments.

Try it (an untrained model, so the tokens are noise; it shows the loop runs):
    python -c "import torch; from mebt.config import ModelConfig, TrainConfig; from mebt.model import MeBT; \
from mebt.decoding import decode; from mebt.pipeline import sampling_settings; cfg = ModelConfig(grid=(4, 8, 8)); \
print(decode(MeBT(cfg), 2, (4, 8, 8), progress=True, **sampling_settings(TrainConfig(), 256)).shape)"
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
from tqdm import tqdm

from mebt.model import check_indices


def cosine_schedule(n: int, steps: int) -> list[int]:
    """Number of tokens still masked after each decoding step.

    Args:
      n: number of tokens to generate; all n are masked before step 1.
      steps: number of decoding steps K.

    Returns:
      counts: counts[k-1] = ceil(cos(pi/2 * k/K) * n) after step k = 1..K, clamped so that every step
        reveals at least one token and the last step reveals all. Strictly decreasing and ends at 0;
        shorter than K when n < K (it stops once nothing is left), empty when n == 0.
    """
    if n < 0 or steps < 1:
        raise ValueError(f"cosine_schedule(n={n}, steps={steps}): expected n >= 0 and steps >= 1")
    counts = []
    for k in range(1, steps + 1):
        remaining = counts[-1] if counts else n
        if remaining == 0:
            break
        # the 1e-9 keeps float noise (cos(pi/3) = 0.5000000000000001) from rounding up a whole token
        scheduled = 0 if k == steps else math.ceil(math.cos(math.pi / 2 * k / steps) * n - 1e-9)
        counts.append(min(scheduled, remaining - 1))
    return counts


def _gumbel(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise: -log(-log u), u ~ U(0, 1)."""
    u = torch.rand(shape, generator=generator, device=device)
    return -torch.log(-torch.log(u.clamp_min(1e-20)))   # clamp: u == 0 would give -log(inf)


def _split(in_context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) bool -> (context_pos (B, Nc), target_pos (B, Nm)), ascending; every row must have the same Nc."""
    B = in_context.shape[0]
    # nonzero() lists hits in row-major order, so equal counts per row reshape straight to (B, n)
    context_pos = in_context.nonzero()[:, 1].view(B, -1)
    target_pos = (~in_context).nonzero()[:, 1].view(B, -1)
    return context_pos, target_pos


def _predict(model: nn.Module, tokens: torch.Tensor, in_context: torch.Tensor):
    """Runs the model on the split given by in_context; returns target_pos (B, Nm) and logits (B, Nm, V)."""
    context_pos, target_pos = _split(in_context)
    logits = model(tokens.gather(1, context_pos), context_pos, target_pos)
    if logits.shape[:2] != target_pos.shape:
        raise ValueError(f"model returned logits {tuple(logits.shape)}, expected (B, Nm, V) with (B, Nm) = "
                         f"{tuple(target_pos.shape)}")
    return target_pos, logits


def sharpen_foreground(logits: torch.Tensor, temperature: float, background_code: int | None) -> torch.Tensor:
    """Reshape each distribution over codes: p(background) as the model says, the other codes sharpened.

    logits (..., V) -> float32 logits (..., V) of q, with q(bg) = p(bg) and q(c) proportional to p(c)^(1/temperature)
    for c != bg, scaled so that they share 1 - p(bg). temperature 1 or no background code: p itself.
    Why: on a flat background one code is most of every video, and an object's probability is spread over many
    codes (colour x sub-patch offset). A plain temperature below 1 takes mass from the objects and gives it to the
    background (videos empty out); this one leaves *whether* a token is background to the model and only makes
    *which* object code less noisy (README, "Sharper object codes")."""
    if temperature == 1.0 or background_code is None:
        return logits.float()                                                        # the very same draws as before
    logp = logits.float().log_softmax(dim=-1)                                        # (..., V)
    bg = torch.tensor([background_code], device=logp.device)                          # (1,) index of the background
    log_p_bg = logp.index_select(-1, bg)                                             # (..., 1)
    rest = (logp / temperature).index_fill(-1, bg, float("-inf"))
    # log q(c) = log softmax_rest(log p / T)(c) + log(1 - p(bg)); clamp: p(bg) = 1 leaves nothing to share
    rest = rest.log_softmax(dim=-1) + torch.log1p(-log_p_bg.exp().clamp_max(1 - 1e-6))
    return rest.index_copy(-1, bg, log_p_bg)


def _sample(logits: torch.Tensor, temperature: float, top_k: int | None, generator, device,
            foreground_temperature: float = 1.0, background_code: int | None = None):
    """One token per target: (B, n, V) -> tokens (B, n), log p(token) (B, n) under the model's own distribution."""
    logits = logits.float()
    scores = sharpen_foreground(logits, foreground_temperature, background_code)     # (B, n, V)
    if top_k is not None and top_k < logits.shape[-1]:
        kth_best = scores.topk(top_k, dim=-1).values[..., -1:]          # (B, n, 1)
        scores = scores.masked_fill(scores < kth_best, float("-inf"))  # only the k best stay possible
    if temperature > 0:
        # Gumbel-max trick: argmax(l/T + g) is an exact draw from softmax(l/T)
        scores = scores / temperature + _gumbel(scores.shape, generator, device)
    tokens = scores.argmax(dim=-1)                                      # (B, n); temperature 0 -> greedy
    # confidence is judged by the model itself, before temperature and top-k reshape the draw
    log_p = logits.gather(-1, tokens[..., None]).squeeze(-1) - logits.logsumexp(dim=-1)
    return tokens, log_p


def _resolve(device: torch.device | str) -> torch.device:
    """torch.device with its index filled in: plain "cuda" means the current CUDA device."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def decode(model: nn.Module, batch_size: int, grid: tuple[int, int, int], *, steps: int,
           context_temperature: float, bootstrap: int, revise: int, revise_temperature: float,
           temperature: float = 1.0, top_k: int | None = None, foreground_temperature: float = 1.0,
           background_code: int | None = None, given: torch.Tensor | None = None,
           generator: torch.Generator | None = None, device: torch.device | str | None = None,
           return_history: bool = False, progress: bool = False):
    """Iterative masked decoding of a (t, h, w) token grid.

    Args:
      model: any nn.Module with forward(context_tokens (B, Nc), context_pos (B, Nc), target_pos (B, Nm))
        -> logits (B, Nm, V); run in eval mode without gradients, its training flag restored afterwards.
        With a `cfg` (MeBT, the baselines) the grid and `given` are checked against its positions and vocabulary.
      batch_size: B, number of grids to generate.
      grid: (t, h, w); positions are flat indices (ti*h + hi)*w + wi into it.
      steps: K, number of main-loop steps; the masked count follows cosine_schedule(n_unknown, K).
      context_temperature: tau_0; targets are kept by log p(token) + tau_0 * (1 - k/K) * Gumbel noise.
      bootstrap: steps before the main loop that each reveal one random unknown token sampled from the model
        (all unknown positions are the targets, as in training).
      revise: draft-and-revise rounds after the main loop; each splits the non-given positions randomly into
        two halves and resamples each half given everything else.
      revise_temperature: sampling temperature of the revise passes.
      temperature: token sampling temperature of the bootstrap and main loop (0 = argmax; 1 = the model's own).
      top_k: if set, the main loop samples only among the k most likely tokens; bootstrap and revise sample
        from the whole distribution, as the authors' code does.
      foreground_temperature, background_code: every draw (bootstrap, main loop, revise) keeps the model's
        p(background_code) and sharpens the other codes by this temperature (sharpen_foreground); 1 or None: off.
      given: optional (B, t*h*w) long of known tokens, -1 = unknown. Known tokens are context from the start
        and never change; every sample must have the same number of them.
      generator: optional torch.Generator on the decoding device (the same device, index included), for
        reproducible samples.
      device: where to decode; default: the model's device.
      return_history: also return the step at which each position was revealed.
      progress: show a tqdm bar over the model calls.

    Returns:
      tokens: (B, t, h, w) long.
      history: only if return_history; (B, t*h*w) long, the step (1-based, bootstrap steps counted first)
        at which each position was revealed; 0 for given tokens. Revise passes do not change it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: expected at least 1")
    if len(grid) != 3 or min(grid) < 1:
        raise ValueError(f"grid={tuple(grid)}: expected three positive sizes (t, h, w)")
    if steps < 1:
        raise ValueError(f"steps={steps}: expected at least 1 decoding step")
    if temperature < 0 or revise_temperature < 0 or context_temperature < 0:
        raise ValueError("temperature, revise_temperature and context_temperature must be >= 0")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k={top_k}: expected None or at least 1")
    if foreground_temperature <= 0:
        raise ValueError(f"foreground_temperature={foreground_temperature}: expected > 0 (1 = off)")
    if bootstrap < 0 or revise < 0:
        raise ValueError(f"bootstrap={bootstrap}, revise={revise}: expected >= 0")
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = _resolve(device)
    if generator is not None and _resolve(generator.device) != device:   # cuda:1 is not cuda:0
        raise ValueError(f"generator is on {generator.device} but decoding runs on {device}: create it there")
    B, N = batch_size, math.prod(grid)
    cfg = getattr(model, "cfg", None)
    if cfg is not None and N > cfg.n_positions:
        raise ValueError(f"grid={tuple(grid)} has {N} positions, the model's grid {tuple(cfg.grid)} only "
                         f"{cfg.n_positions}")

    if given is None:
        tokens = torch.full((B, N), -1, dtype=torch.long, device=device)   # (B, N), -1 = not yet known
    else:
        if tuple(given.shape) != (B, N) or given.is_floating_point():
            raise ValueError(f"given: expected an integer tensor of shape (batch_size, t*h*w) = {(B, N)}, "
                             f"got {given.dtype} {tuple(given.shape)}")
        if (given < -1).any():
            raise ValueError("given: token indices must be >= 0, or -1 for unknown")
        if cfg is not None:   # checked here, once: the model itself never reads values back (no host sync)
            check_indices("given", given.clamp_min(0), cfg.vocab_size, "codebook indices (or -1 for unknown)")
        tokens = given.to(device=device, dtype=torch.long).clone()
    if background_code is not None and (background_code < 0 or cfg is not None and background_code >= cfg.vocab_size):
        raise ValueError(f"background_code={background_code}: expected a codebook index")
    foreground = (foreground_temperature, background_code)      # how every draw below reshapes p
    is_given = tokens >= 0                                       # (B, N) never resampled
    n_given = is_given.sum(dim=1)                                # (B,)
    if (n_given != n_given[0]).any():
        raise ValueError("given: every sample must have the same number of known tokens (-1 elsewhere)")
    n_unknown = N - int(n_given[0])
    if bootstrap > n_unknown:
        raise ValueError(f"bootstrap={bootstrap}: at most the number of unknown positions ({n_unknown})")
    schedule = cosine_schedule(n_unknown - bootstrap, steps)
    # each revise round is two passes (one per half); with fewer than 2 free positions there are no halves
    revise_passes = [half for _ in range(revise) for half in (0, 1)] if n_unknown >= 2 else []

    history = torch.zeros(B, N, dtype=torch.long, device=device)  # (B, N) 0 = given
    rows = torch.arange(B, device=device)[:, None]               # (B, 1) to index one position per row
    bar = tqdm(total=bootstrap + len(schedule) + len(revise_passes), disable=not progress, desc="decode")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            step = 0
            # 1. bootstrap: one random unknown position per sample, drawn from the model's prediction there
            for _ in range(bootstrap):
                step += 1
                target_pos, logits = _predict(model, tokens, tokens >= 0)                 # (B, m), (B, m, V)
                pick = torch.randint(target_pos.shape[1], (B, 1), generator=generator, device=device)  # (B, 1)
                sampled, _ = _sample(logits[rows, pick], temperature, None, generator, device, *foreground)   # (B, 1)
                pos = target_pos.gather(1, pick)                                           # (B, 1)
                tokens.scatter_(1, pos, sampled)
                history.scatter_(1, pos, step)
                bar.update()
            # 2. main loop: keep the most confident samples so that schedule[k-1] stay masked after step k
            for k, n_left in enumerate(schedule, start=1):
                step += 1
                target_pos, logits = _predict(model, tokens, tokens >= 0)                 # (B, m), (B, m, V)
                sampled, log_p = _sample(logits, temperature, top_k, generator, device, *foreground)   # (B, m), (B, m)
                tau = context_temperature * (1 - k / steps)                               # annealed to 0 at k = K
                confidence = log_p + tau * _gumbel(log_p.shape, generator, device)        # (B, m)
                keep = confidence.topk(target_pos.shape[1] - n_left, dim=1).indices       # (B, m - n_left)
                pos = target_pos.gather(1, keep)
                tokens.scatter_(1, pos, sampled.gather(1, keep))
                history.scatter_(1, pos, step)
                bar.update()
            # 3. draft-and-revise: resample each random half of the free positions given all the rest
            for half in revise_passes:
                if half == 0:   # a new random split of the non-given positions for every round
                    _, free_pos = _split(is_given)                                        # (B, n_unknown)
                    order = torch.rand(B, n_unknown, generator=generator, device=device).argsort(dim=1)
                    halves = free_pos.gather(1, order).tensor_split(2, dim=1)             # 2 x (B, ~n_unknown/2)
                in_context = torch.ones(B, N, dtype=torch.bool, device=device)
                in_context.scatter_(1, halves[half], False)                               # this half is masked
                target_pos, logits = _predict(model, tokens, in_context)
                sampled, _ = _sample(logits, revise_temperature, None, generator, device, *foreground)
                tokens.scatter_(1, target_pos, sampled)
                bar.update()
    finally:
        model.train(was_training)
        bar.close()
    tokens = tokens.view(B, *grid)                                # (B, t, h, w)
    return (tokens, history) if return_history else tokens
