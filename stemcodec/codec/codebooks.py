"""Codebook upkeep for training our codecs.

The `encodec` package updates its codebooks by EMA in training mode, but as we build them (no
k-means init) it cannot train them: the EMA starts from a cluster size of zero, which scales
unused codes up by ~1e5 and the codebook collapses to a code or two; and its dead-code
replacement is a no-op (it writes `embed`, which the EMA step then overwrites from `embed_avg`).
So we keep the package's EMA update and do the rest here: codebooks start as k-means of the
first batch's encodings with consistent EMA statistics, and after each step a code used less
than a fraction of the average is reset to a random encoding of the batch.

Across processes (DDP) each rank's EMA step sees only its own batch; `sync_codebooks` averages
the statistics over ranks after every step, which is the EMA of the whole batch's statistics,
and dead codes are drawn from the encodings of all ranks, the same on each.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from encodec.quantization.core_vq import laplace_smoothing
from torch import nn

Reduce = Callable[[torch.Tensor], torch.Tensor]


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def codebooks(codec: nn.Module) -> list[nn.Module]:
    return [layer._codebook for layer in codec.quantizer.vq.layers]


def kmeans(x: torch.Tensor, k: int, iters: int,
           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of x [N, D] (matrix distances, no [N, k, D] tensor) -> (means [k, D], counts [k])."""
    if x.shape[0] >= k:
        means = x[torch.randperm(x.shape[0], generator=generator)[:k]]
    else:
        means = x[torch.randint(0, x.shape[0], (k,), generator=generator)]
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(1, iters)):
        nearest = torch.cdist(x, means).argmin(dim=1)  # [N]
        counts = torch.bincount(nearest, minlength=k).to(x.dtype)
        sums = torch.zeros_like(means).index_add_(0, nearest, x)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], means)
    return means, counts


@torch.no_grad()
def init_codebooks(codec: nn.Module, wav: torch.Tensor, iters: int,
                   broadcast: Reduce = _identity) -> None:
    """Each residual codebook := k-means of its residuals over the encodings of wav [B, 1, S],
    with EMA statistics that agree with it (embed_avg = embed * cluster_size); `broadcast`
    hands rank 0's result to every process."""
    emb = codec.encoder(wav)  # [B, D, T]
    residual = emb.transpose(1, 2).reshape(-1, emb.shape[1])  # [B*T, D]
    for book in codebooks(codec):
        means, counts = kmeans(residual, book.codebook_size, iters)
        book.embed.copy_(broadcast(means.contiguous()))
        book.cluster_size.copy_(broadcast(counts.contiguous()))
        book.embed_avg.copy_(book.embed * book.cluster_size[:, None])
        residual = residual - F.embedding(book.quantize(residual), book.embed)


@torch.no_grad()
def sync_codebooks(codec: nn.Module, mean: Reduce) -> None:
    """Average each codebook's EMA statistics over processes (`mean`: an all-reduce mean) and
    recompute its vectors from them, as the package's EMA step does."""
    for book in codebooks(codec):
        book.cluster_size.copy_(mean(book.cluster_size.contiguous()))
        book.embed_avg.copy_(mean(book.embed_avg.contiguous()))
        n = book.cluster_size.sum()
        size = laplace_smoothing(book.cluster_size, book.codebook_size, book.epsilon) * n
        book.embed.copy_(book.embed_avg / size[:, None])


@torch.no_grad()
def replace_dead_codes(codec: nn.Module, emb: torch.Tensor, fraction: float,
                       generator: torch.Generator | None = None) -> int:
    """Codes whose EMA use is below `fraction` x the average use get a random residual of the
    encodings emb [B, D, T] as their new vector, with the EMA statistics of an average code (so
    the next update keeps it, and it is not reset again before it had time to be used). Under
    DDP pass every rank's encodings (gathered) and one seeded `generator`: ranks agree."""
    if fraction <= 0:
        return 0
    residual = emb.transpose(1, 2).reshape(-1, emb.shape[1])  # [B*T, D]
    replaced = 0
    for book in codebooks(codec):
        quantized = F.embedding(book.quantize(residual), book.embed)  # before any reset
        average = book.cluster_size.mean()
        dead = book.cluster_size < fraction * average
        n = int(dead.sum())
        if n:  # a fresh code starts as an average one: ~230 steps (decay 0.99) to prove itself
            pick = torch.randint(0, residual.shape[0], (n,), generator=generator)
            fresh = residual[pick.to(residual.device)]
            book.embed[dead] = fresh
            book.embed_avg[dead] = fresh * average
            book.cluster_size[dead] = average
            replaced += n
        residual = residual - quantized
    return replaced


def codebook_perplexity(codec: nn.Module) -> list[float]:
    """exp(entropy) of each codebook's EMA use: how many codes it effectively uses."""
    out = []
    for book in codebooks(codec):
        p = book.cluster_size / book.cluster_size.sum().clamp_min(1e-12)
        out.append(float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())))
    return out
