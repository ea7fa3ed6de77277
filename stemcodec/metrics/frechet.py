"""Fréchet distance between two sets of embeddings (as FAD does with VGGish, here with the
instrument classifier's embedding, per stem): the distance between two Gaussians fitted to
the sets,

    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

computed through the eigenvalues of S_a^(1/2) S_b S_a^(1/2), which are real and non-negative.
"""

from __future__ import annotations

import math

import torch


def _sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance of embeddings `a [N, D]` and `b [M, D]` (N, M >= 2)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("the Fréchet distance needs at least two embeddings per set")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(dim=0), b.mean(dim=0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root_a = _sqrtm_psd(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    distance = float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross)
    # the trace terms cancel to a tiny negative number for two equal sets (NaN is kept)
    return distance if math.isnan(distance) else max(0.0, distance)
