"""Autoregressive sampling of all slots in parallel, through the delay pattern.

At step p the model sees positions < p of every slot and emits position p of every slot (one
token per codebook, or the special token where the delay pattern has none). Slots marked
given are not sampled: their known tokens are written in instead, so the others fit them.

`sample_frames` yields each frame as soon as its last codebook is drawn (what a stream
decodes chunk by chunk); `generate_codes` collects them. A generator per batch row makes a
row's draws its own: row b of a batch seeded [s0, s1, ...] is the single run seeded s_b.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import NamedTuple

import torch

from .objects import Objects
from .patterns import build_delay, valid_mask
from .transformer import MultiStreamTransformer

# one generator for the whole batch, or one per batch row (row b draws from generator b)
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass
class SamplingConfig:
    """Each setting is one value for every codebook, or a sequence of one per codebook
    (MusicGen-style: the coarse first codebook may want other settings than the fine ones)."""

    temperature: float | Sequence[float] = 1.0  # 0 = greedy
    top_k: int | Sequence[int] = 250  # 0 = off
    top_p: float | Sequence[float] = 0.0  # 0 = off

    def per_codebook(self, codebooks: int) -> list[SamplingConfig] | None:
        """One single-valued config per codebook, or None when every setting is single."""
        if not any(_is_sequence(getattr(self, f.name)) for f in fields(self)):
            return None
        columns = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if _is_sequence(value):
                if len(value) != codebooks:
                    raise ValueError(f"{f.name}: {len(value)} values for {codebooks} codebooks")
                columns[f.name] = [v.item() if hasattr(v, "item") else v for v in value]
            else:
                columns[f.name] = [value] * codebooks
        return [SamplingConfig(**{name: column[q] for name, column in columns.items()})
                for q in range(codebooks)]


def _is_sequence(value) -> bool:
    return not isinstance(value, (str, bytes)) and hasattr(value, "__len__")


def draw_uniform(shape: Sequence[int], generator: Generators,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Numbers in (0, 1] of `shape` [B, ...]; with one generator per row, row b comes from
    generator b alone, so it does not depend on the other rows of the batch."""
    if generator is None or isinstance(generator, torch.Generator):
        return 1.0 - torch.rand(tuple(shape), generator=generator, device=device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
    row = (1, *shape[1:])
    return torch.cat([1.0 - torch.rand(row, generator=g, device=device) for g in generator])


def sample_codebooks(logits: torch.Tensor, cfg: SamplingConfig,
                     generator: Generators = None) -> torch.Tensor:
    """logits [..., Q, card] -> ids [..., Q], each codebook with its own settings if any.

    The uniform numbers are drawn once for all codebooks, as the single-valued path draws
    them, so `temperature=[1, 1, 1, 1]` gives the same tokens as `temperature=1`, and making
    one codebook greedy leaves the draws of the others as they were."""
    per_q = cfg.per_codebook(logits.shape[-2])
    if per_q is None:
        return sample_logits(logits, cfg, generator)
    if not FUSE_CODEBOOKS:
        return _sample_each_codebook(logits, per_q, generator)
    settings = CodebookSettings.of(per_q, logits.shape[-1], logits.device)
    return sample_per_codebook(logits, settings, generator)


# False: settings per codebook sample one codebook at a time, the reference the fused pass
# (`sample_per_codebook`) is checked against in the tests and timed against in bench/
FUSE_CODEBOOKS = True


class CodebookSettings(NamedTuple):
    """Settings per codebook as tensors over the Q codebooks, made once per generation
    (`of`), so that a step samples all the codebooks in one pass (`sample_per_codebook`)."""

    greedy: tuple[bool, ...]  # temperature 0: the argmax
    greedy_rows: torch.Tensor  # [Q] bool, the same
    temperature: tuple[float, ...]  # a sampled codebook's where greedy (its row is not used)
    top_k: tuple[int, ...]  # k of each codebook, 0 where off (0, or not below card)
    kth: torch.Tensor  # [Q, 1] long: where the k-th largest lies in a descending top-k
    k_off: torch.Tensor  # [Q, 1] bool: top-k off
    top_p: torch.Tensor | None  # [Q, 1] float32, inf where off; None: off for every codebook

    @classmethod
    def of(cls, per_q: Sequence[SamplingConfig], cardinality: int,
           device: torch.device | str | None = None) -> CodebookSettings:
        """From one single-valued config per codebook (`SamplingConfig.per_codebook`)."""
        greedy = tuple(c.temperature <= 0 for c in per_q)
        sampled = [c.temperature for c in per_q if c.temperature > 0] or [1.0]
        ks = tuple(c.top_k if 0 < c.top_k < cardinality else 0 for c in per_q)
        ps = [c.top_p if 0 < c.top_p < 1 else float("inf") for c in per_q]

        def column(values, dtype) -> torch.Tensor:
            return torch.tensor(values, dtype=dtype, device=device)[:, None]

        return cls(greedy=greedy, greedy_rows=column(greedy, torch.bool)[:, 0],
                   temperature=tuple(sampled[0] if g else c.temperature
                                     for g, c in zip(greedy, per_q)),
                   top_k=ks, kth=column([max(k - 1, 0) for k in ks], torch.long),
                   k_off=column([k == 0 for k in ks], torch.bool),
                   top_p=None if all(p == float("inf") for p in ps)
                   else column(ps, torch.float32))


def sample_per_codebook(logits: torch.Tensor, settings: CodebookSettings,
                        generator: Generators = None) -> torch.Tensor:
    """logits [..., Q, card] -> ids [..., Q], each codebook with its own `settings`, all the
    codebooks in one pass: the tokens of `sample_logits` on each codebook in turn, the uniform
    numbers drawn once for all (`_sample_each_codebook`), with one set of operations a step
    instead of Q. Each operation works along a row (one codebook's logits), so a row comes
    out as it would alone; a setting that is off for a codebook is a no-op on its row (a k-th
    largest of -inf, a top-p of inf)."""
    from .transformer import SMALL_STEP_ROWS, at_most_threads

    if all(settings.greedy):  # no number drawn, as the loop draws none
        return logits.argmax(dim=-1)
    u = draw_uniform(logits.shape[:-1] + (1,), generator, logits.device)  # [..., Q, 1]
    small = logits.device.type == "cpu" and logits.numel() <= SMALL_STEP_ROWS * 4 * 1024
    with at_most_threads(1 if small else None):
        if len(set(settings.temperature)) == 1:
            scaled = logits.float() / settings.temperature[0]
        else:  # each row divided by its Python number, as the loop divides it (on CUDA that
            # is a product with the reciprocal: a tensor of temperatures would round otherwise)
            scaled = logits.to(torch.float32, copy=True)
            for q, temperature in enumerate(settings.temperature):
                scaled[..., q, :] /= temperature
        ks = [k for k in settings.top_k if k]
        if len(ks) == len(settings.top_k) and len(set(ks)) == 1:
            # one k for every codebook: the least of the k largest, as sample_logits finds it
            kth = scaled.topk(ks[0], dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        elif ks:  # the k-th largest of each row, from one descending top-k of the largest k
            top = scaled.topk(max(ks), dim=-1).values
            kth = top.gather(-1, settings.kth.expand(*top.shape[:-1], 1))
            kth = kth.masked_fill(settings.k_off, float("-inf"))
            scaled = scaled.masked_fill(scaled < kth, float("-inf"))
        probs = scaled.softmax(dim=-1)
        if settings.top_p is not None:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            drop = sorted_probs.cumsum(dim=-1) - sorted_probs > settings.top_p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)  # a permutation
        cdf = probs.cumsum(dim=-1)
        picks = torch.searchsorted(cdf, u * cdf[..., -1:]).squeeze(-1)
        picks = picks.clamp_max(cdf.shape[-1] - 1)
    if any(settings.greedy):
        picks = torch.where(settings.greedy_rows, logits.argmax(dim=-1), picks)
    return picks


def _sample_each_codebook(logits: torch.Tensor, per_q: list[SamplingConfig],
                          generator: Generators) -> torch.Tensor:
    """sample_codebooks one codebook at a time, with the per-codebook configs already
    resolved (once per generation, not once per step): the reference of the fused pass."""
    u = None
    if any(c.temperature > 0 for c in per_q):
        u = draw_uniform(logits.shape[:-1] + (1,), generator, logits.device)
    return torch.stack([sample_logits(logits[..., q, :], c, generator,
                                      u=None if u is None else u[..., q, :])
                        for q, c in enumerate(per_q)], dim=-1)


def sample_logits(logits: torch.Tensor, cfg: SamplingConfig,
                  generator: Generators = None,
                  u: torch.Tensor | None = None) -> torch.Tensor:
    """logits [..., card] -> token ids [...] (temperature, then top-k, then top-p).

    Draws by inverting the cumulative distribution with one uniform number per row (the
    first id whose cumulative probability reaches u * total, u in (0, 1], so never an id of
    probability 0); torch.multinomial draws an exponential number for every entry, which
    took about a tenth of a generation step. `u` ([..., 1]) supplies the numbers instead of
    drawing them. A small batch (one step's rows) runs on one CPU thread, as the model's step
    does (see transformer.at_most_threads). Settings per codebook: logits [..., Q, card],
    see sample_codebooks.
    """
    from .transformer import SMALL_STEP_ROWS, at_most_threads

    if any(_is_sequence(getattr(cfg, f.name)) for f in fields(cfg)):
        return sample_codebooks(logits, cfg, generator)
    if cfg.temperature <= 0:
        return logits.argmax(dim=-1)
    small = logits.device.type == "cpu" and logits.numel() <= SMALL_STEP_ROWS * 4 * 1024
    with at_most_threads(1 if small else None):
        logits = logits.float() / cfg.temperature
        if cfg.top_k > 0 and cfg.top_k < logits.shape[-1]:
            # the k-th largest: the least of the k largest (unsorted is cheaper)
            kth = logits.topk(cfg.top_k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        if 0 < cfg.top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            drop = sorted_probs.cumsum(dim=-1) - sorted_probs > cfg.top_p  # keep the first above p
            sorted_probs = sorted_probs.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        cdf = probs.cumsum(dim=-1)  # [..., card], non-decreasing
        if u is None:
            u = draw_uniform(cdf.shape[:-1] + (1,), generator, cdf.device)
        picks = torch.searchsorted(cdf, u * cdf[..., -1:])  # [..., 1]
        return picks.squeeze(-1).clamp_max(cdf.shape[-1] - 1)  # in range even for NaN logits


class Forced(NamedTuple):
    """Known codes in the delayed layout, by name (a bare pair was once unpacked the wrong
    way round)."""

    tokens: torch.Tensor  # [B, K, Q, T + Q] long: what to write where `mask` is True
    mask: torch.Tensor  # [B, K, Q, T + Q] bool: the positions whose tokens are forced


def forced_positions(given: torch.Tensor, given_mask: torch.Tensor, special: int) -> Forced:
    """Known codes in `build_delay`'s layout.

    Args:
        given: codes [B, K, Q, T].
        given_mask: [B, K] (whole slots) or [B, K, T] (frames, e.g. a prompt's opening).
    """
    B, K, Q, T = given.shape
    if given_mask.dim() == 2:
        given_mask = given_mask[:, :, None].expand(B, K, T)
    frames = given_mask[:, :, None, :].expand(B, K, Q, T).long()
    return Forced(tokens=build_delay(given, special), mask=build_delay(frames, 0).bool())


def rebase(seq: torch.Tensor, offset: int, special: int) -> torch.Tensor:
    """seq[..., offset:] as if frame `offset` were the first: what training windows look like
    (start column, then codebook q begins q positions later). A copy."""
    view = seq[..., offset:].clone()
    if offset > 0:
        for q in range(seq.shape[-2]):
            view[..., q, : 1 + q] = special
    return view


@torch.inference_mode()
def generate_codes(model: MultiStreamTransformer, instrument: torch.Tensor, frames: int,
                   sampling: SamplingConfig = SamplingConfig(),
                   given: torch.Tensor | None = None, given_mask: torch.Tensor | None = None,
                   generator: Generators = None, use_cache: bool = True,
                   on_step: Callable[[int], None] | None = None, *,
                   cfg_scale: float = 1.0, window: int | None = None,
                   context: int | None = None, objects: Objects | None = None) -> torch.Tensor:
    """Sample codes [B, K, Q, frames] for the slots `instrument[B, K]`.

    Args (the rest as `sample_frames`):
        on_step: called after each step with the number of steps done (progress bars).
    """
    done = []
    steps = sample_frames(model, instrument, frames, sampling, given, given_mask, generator,
                          use_cache, cfg_scale=cfg_scale, window=window, context=context,
                          objects=objects)
    for step, frame in enumerate(steps, start=1):
        if frame is not None:
            done.append(frame)
        if on_step is not None:
            on_step(step)
    if not done:
        B, K = instrument.shape
        return torch.zeros(B, K, model.config.num_codebooks, 0, dtype=torch.long,
                           device=next(model.parameters()).device)
    return torch.stack(done, dim=-1)  # [B, K, Q, frames]


@torch.inference_mode()
def sample_frames(model: MultiStreamTransformer, instrument: torch.Tensor, frames: int,
                  sampling: SamplingConfig = SamplingConfig(),
                  given: torch.Tensor | None = None, given_mask: torch.Tensor | None = None,
                  generator: Generators = None, use_cache: bool = True, *,
                  cfg_scale: float = 1.0, window: int | None = None,
                  context: int | None = None,
                  objects: Objects | None = None) -> Iterator[torch.Tensor | None]:
    """Sample `frames` frames for the slots `instrument[B, K]`, one step at a time.

    Yields once per step (frames + Q - 1 steps): the codes [B, K, Q] of the frame the step
    finished (frame t is complete once codebook Q - 1 is drawn, at step t + Q - 1 of the
    delay pattern), or None for the first Q - 1 steps, which finish none.

    Args:
        given: codes [B, K, Q, frames]; where `given_mask` says so they are forced.
        given_mask: [B, K] (the whole slot is given: accompaniment) or [B, K, frames] (the
            frames of a prompt, continued after it ends).
        generator: one for the batch, or one per batch row (each row's own draws).
        use_cache: the static KV cache (one position per step); False recomputes the whole
            window each step (the reference the cache is checked and benchmarked against).
        cfg_scale: classifier-free guidance over the wholly given slots: logits are
            uncond + scale * (cond - uncond), uncond computed with those slots absent.
            1 = off. Needs a model trained with slot dropout.
        window: the most frames the model sees at once (default: all of them); longer
            generations slide: when the window is full, it restarts from the last `context`
            frames (default 3/4 of the window), re-read as a training window is read.
        objects: each slot's instrument object (ids [B, K], reference clips), for a model
            with `config.objects` (None there: unconditioned). Encoded once, before the
            first step: a step only adds the precomputed vector.
    """
    cfg = model.config
    B, K = instrument.shape
    Q, special = cfg.num_codebooks, cfg.cardinality
    per_q = sampling.per_codebook(Q)  # resolved once; a wrong length fails before any step
    if generator is not None and not isinstance(generator, torch.Generator) \
            and len(generator) != B:
        raise ValueError(f"{len(generator)} generators for a batch of {B}")
    device = next(model.parameters()).device
    length = frames + Q  # the delayed sequence, start column included
    span = length if window is None else min(length, window + Q)  # positions in one window
    context = 3 * (span - Q) // 4 if context is None else min(context, span - Q - 1)
    if span < length and context < 1:
        raise ValueError(f"a window of {window} frames leaves no context to slide with")
    keep = context + Q  # positions kept when the window slides
    seq = torch.full((B, K, Q, length), special, dtype=torch.long, device=device)
    forced = None
    whole = torch.zeros(B, K, dtype=torch.bool, device=device)  # slots given from end to end
    if given is not None and given_mask is not None and given_mask.any():
        forced = forced_positions(given.to(device), given_mask.to(device), special)
        whole = given_mask.to(device).reshape(B, K, -1).all(dim=-1)
    guided = cfg_scale != 1.0
    if guided and not whole.any():
        raise ValueError("classifier-free guidance needs at least one wholly given slot")
    real = valid_mask(Q, frames, device=device)  # [Q, length]
    settings = None if per_q is None else CodebookSettings.of(per_q, special, device)
    instrument = instrument.to(device)
    present = torch.ones(B, K, dtype=torch.bool, device=device)
    if guided:  # one batch: conditional rows, then the same rows without the given slots
        instrument = torch.cat([instrument, instrument])
        present = torch.cat([present, ~whole])
    rows = instrument.shape[0]
    cache = model.new_cache(rows, K, max_frames=span) if use_cache else None
    condition = None  # [layers, rows, K, D]: the same at every step
    if model.config.objects:
        if objects is not None:
            objects = Objects(*(None if t is None else t.to(device) for t in objects))
        condition = model.object_condition(objects, B, K)
        if guided:  # the unconditional rows keep their instruments: only given slots go
            condition = torch.cat([condition, condition], dim=1)
    elif objects is not None:
        raise ValueError("this model has no instrument objects (config.objects is False)")

    def run(chunk: torch.Tensor, start: int) -> torch.Tensor:
        """Logits [B, K, Q, card] of the position after `chunk`'s last one."""
        if guided:
            chunk = torch.cat([chunk, chunk])
        out = model(chunk, instrument, present, cache=cache, start=start,
                    objects=condition)[..., -1, :]
        if guided:
            cond, uncond = out.float().chunk(2)
            out = uncond + cfg_scale * (cond - uncond)
        return out

    offset = 0  # the global position that is position 0 of the model's window
    for p in range(1, length):
        slide = p - offset > span  # position p - 1 would not fit in the window
        if slide:
            offset = p - keep
        if cache is None or slide:  # the whole window, re-read from its start
            logits = run(rebase(seq[..., :p], offset, special), 0)
        else:
            logits = run(seq[..., p - 1:p], p - 1 - offset)
        if per_q is None:
            tokens = sample_logits(logits, sampling, generator)
        elif FUSE_CODEBOOKS:
            tokens = sample_per_codebook(logits, settings, generator)
        else:
            tokens = _sample_each_codebook(logits, per_q, generator)
        tokens = torch.where(real[:, p], tokens, special)  # a scalar: no tensor made for it
        if forced is not None:
            tokens = torch.where(forced.mask[..., p], forced.tokens[..., p], tokens)
        seq[..., p] = tokens
        t = p - Q  # the frame whose last codebook this step drew
        # codebook q of frame t sits at position 1 + q + t: the diagonal of Q positions, a
        # copy so that no caller holds a view of the sequence still being written
        yield seq[..., 1 + t:1 + t + Q].diagonal(dim1=-2, dim2=-1).clone() if t >= 0 \
            else None  # [B, K, Q]
