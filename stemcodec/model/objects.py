"""Instrument objects: one persistent vector per slot, seen by every layer (docs/objects.md).

    object id [B, K] ──► embedding ───────────────┐
    reference codes [B, K, Q, R] ──► TimbreEncoder ┴─(+)─► vector [B, K, D]
                                                           │ one Linear per layer
                                                           ▼
                                         condition [layers, B, K, D], added to the
                                         slot's hidden states at every frame before block l

Id 0 is "unknown / none" (a learnt row); a slot without a reference gets a learnt "no
reference" vector instead of the encoder's output, so a slot with neither is the learnt none
vector. The condition does not depend on time: a generation computes it once
(`MultiStreamTransformer.object_condition`) and every step only adds it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from .config import ModelConfig


class Objects(NamedTuple):
    """What a forward is told about each slot's instrument object.

    Attributes:
        id: [B, K] long, ids of stemcodec.objects (0: unknown / none).
        reference: [B, K, Q, R] long codec tokens of a reference clip per slot (no delay
            pattern: a clip is read as a bag of frames), or None: no slot has one.
        reference_mask: [B, K, R] bool, the frames of `reference` that hold a clip (all
            False: that slot has none); None with `reference` None, or every frame.
    """

    id: torch.Tensor
    reference: torch.Tensor | None = None
    reference_mask: torch.Tensor | None = None


class TimbreEncoder(nn.Module):
    """Reference clip -> one vector per slot: a few residual MLP layers on each frame's
    token embedding, then the mean over the clip's frames.

    Frames are read one by one and averaged, never in order: the vector can carry the
    spectra a clip is made of (its timbre), not the succession of its notes. The token
    embeddings are the transformer's own (passed in), so the encoder learns in the space
    the model reads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        from .transformer import RMSNorm
        dim, hidden = cfg.dim, 2 * cfg.dim
        self.layers = nn.ModuleList(
            nn.Sequential(RMSNorm(dim), nn.Linear(dim, hidden, bias=False), nn.GELU(),
                          nn.Linear(hidden, dim, bias=False))
            for _ in range(cfg.timbre_layers))
        self.norm = RMSNorm(dim)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """frames [B, K, R, D] (embedded tokens), mask [B, K, R] bool -> [B, K, D]; a slot
        whose mask is all False gives zeros (the caller replaces them)."""
        x = frames
        for layer in self.layers:
            x = x + layer(x)  # (B, K, R, D)
        m = mask[..., None].to(x.dtype)  # (B, K, R, 1)
        pooled = (x * m).sum(dim=2) / m.sum(dim=2).clamp_min(1.0)  # (B, K, D)
        return self.out(self.norm(pooled))


class InstrumentObjects(nn.Module):
    """Object ids and reference clips -> the per-layer condition [layers, B, K, D]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ids = nn.Embedding(cfg.num_objects, cfg.dim)  # row 0: unknown / none
        self.timbre = TimbreEncoder(cfg)
        self.no_reference = nn.Parameter(torch.zeros(cfg.dim))
        # one map per layer: each layer reads the object in its own basis
        self.layers = nn.ModuleList(nn.Linear(cfg.dim, cfg.dim, bias=False)
                                    for _ in range(cfg.num_layers))

    def forward(self, objects: Objects, embed_frames) -> torch.Tensor:
        """The condition [layers, B, K, D].

        Args:
            objects: ids, and optional reference clips.
            embed_frames: codes [B, K, Q, R] -> [B, K, R, D], the transformer's token
                embedding summed over codebooks.
        """
        vector = self.ids(objects.id)  # (B, K, D)
        no_reference = self.no_reference.to(vector.dtype)
        if objects.reference is None:
            vector = vector + no_reference
        else:
            mask = objects.reference_mask
            if mask is None:
                mask = torch.ones(objects.reference.shape[:2] + objects.reference.shape[-1:],
                                  dtype=torch.bool, device=objects.reference.device)
            timbre = self.timbre(embed_frames(objects.reference), mask)  # (B, K, D)
            has = mask.any(dim=-1, keepdim=True)  # (B, K, 1)
            vector = vector + torch.where(has, timbre.to(vector.dtype), no_reference)
        return torch.stack([layer(vector) for layer in self.layers])  # (L, B, K, D)
