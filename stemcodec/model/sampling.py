"""Autoregressive sampling of all slots in parallel, through the delay pattern.

At step p the model sees positions < p of every slot and emits position p of every slot (one
token per codebook, or the special token where the delay pattern has none). Slots marked
given are not sampled: their known tokens are written in instead, so the others fit them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .patterns import build_delay, revert_delay, valid_mask
from .transformer import MultiStreamTransformer


@dataclass
class SamplingConfig:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 250  # 0 = off
    top_p: float = 0.0  # 0 = off


def sample_logits(logits: torch.Tensor, cfg: SamplingConfig,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [..., card] -> token ids [...] (temperature, then top-k, then top-p)."""
    if cfg.temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / cfg.temperature
    if cfg.top_k > 0 and cfg.top_k < logits.shape[-1]:
        kth = logits.topk(cfg.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(dim=-1)
    if 0 < cfg.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > cfg.top_p  # keep the first above p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    flat = probs.reshape(-1, probs.shape[-1])
    picks = torch.multinomial(flat, 1, generator=generator)
    return picks.view(probs.shape[:-1])


@torch.inference_mode()
def generate_codes(model: MultiStreamTransformer, instrument: torch.Tensor, frames: int,
                   sampling: SamplingConfig = SamplingConfig(),
                   given: torch.Tensor | None = None, given_mask: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, use_cache: bool = True,
                   on_step: Callable[[int], None] | None = None) -> torch.Tensor:
    """Sample codes [B, K, Q, frames] for the slots `instrument[B, K]`.

    Args:
        given: codes [B, K, Q, frames] whose slots in `given_mask[B, K]` are forced.
        use_cache: the static KV cache (one position per step); False recomputes the whole
            prefix each step (the reference the cache is checked and benchmarked against).
        on_step: called after each step with the number of steps done (progress bars).
    """
    cfg = model.config
    B, K = instrument.shape
    Q, special = cfg.num_codebooks, cfg.cardinality
    device = next(model.parameters()).device
    length = frames + Q  # the delayed sequence, start column included
    seq = torch.full((B, K, Q, length), special, dtype=torch.long, device=device)
    forced = None
    if given is not None and given_mask is not None and given_mask.any():
        forced = build_delay(given.to(device), special)
        mask = given_mask.to(device)[:, :, None, None]
    real = valid_mask(Q, frames, device=device)  # [Q, length]
    cache = model.new_cache(B, K, max_frames=length) if use_cache else None
    instrument = instrument.to(device)
    for p in range(1, length):
        if cache is not None:
            logits = model(seq[..., p - 1:p], instrument, cache=cache, start=p - 1)[..., 0, :]
        else:
            logits = model(seq[..., :p], instrument)[..., -1, :]  # [B, K, Q, card]
        tokens = sample_logits(logits, sampling, generator)
        tokens = torch.where(real[:, p], tokens, torch.full_like(tokens, special))
        if forced is not None:
            tokens = torch.where(mask[..., 0], forced[..., p], tokens)
        seq[..., p] = tokens
        if on_step is not None:
            on_step(p)
    return revert_delay(seq, Q)
