"""Instrument identity of a stem, second by second, from the instrument classifier.

    identity accuracy = share of active seconds labelled as the slot's instrument
    switch rate       = share of neighbouring active-second pairs whose label changes

A stem that keeps its instrument scores accuracy 1 and switch rate 0; a guitar that drifts
into an organ halfway scores about 0.5 and 1 / (seconds - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .classifier import InstrumentClassifier
from .seconds import active_seconds, split_seconds


@dataclass
class SecondLabels:
    """Per-second classifier output for one stem (active seconds only)."""
    labels: list[str]          # label of each active second
    index: list[int]           # which second of the stem each label belongs to
    probs: torch.Tensor        # [N, classes]
    embeddings: torch.Tensor   # [N, D]


def label_seconds(model: InstrumentClassifier, wav: torch.Tensor, rate: int) -> SecondLabels:
    """Classify every active second of `wav` `[C, S]`."""
    segments = split_seconds(wav, rate, model.config.segment_seconds)  # [N, L]
    active = active_seconds(segments)
    index = active.nonzero().flatten().tolist()
    probs, embs = model.predict(segments[active], rate)
    names = model.config.classes
    return SecondLabels([names[i] for i in probs.argmax(dim=-1).tolist()], index, probs, embs)


def identity_accuracy(seconds: SecondLabels, instrument: str) -> float | None:
    """Share of active seconds labelled `instrument`; None without active seconds."""
    if not seconds.labels:
        return None
    return sum(label == instrument for label in seconds.labels) / len(seconds.labels)


def switch_rate(seconds: SecondLabels) -> float | None:
    """Share of neighbouring active seconds (i, i + 1) with different labels; None when the
    stem has no such pair."""
    pairs = [(a, b) for (i, a), (j, b) in zip(zip(seconds.index, seconds.labels),
                                              zip(seconds.index[1:], seconds.labels[1:]))
             if j == i + 1]
    if not pairs:
        return None
    return sum(a != b for a, b in pairs) / len(pairs)


def reconstruction_identity(model: InstrumentClassifier, reference: torch.Tensor,
                            estimate: torch.Tensor, rate: int,
                            instrument: str) -> tuple[int, int]:
    """(seconds of `estimate` labelled `instrument`, seconds counted): the seconds are those
    active in `reference` (a codec's noise in a silent second is not an instrument)."""
    seg = model.config.segment_seconds
    ref = split_seconds(reference, rate, seg)
    est = split_seconds(estimate, rate, seg)[: ref.shape[0]]
    active = active_seconds(ref)[: est.shape[0]]
    if not active.any():
        return 0, 0
    probs, _ = model.predict(est[active], rate)
    names = model.config.classes
    labels = [names[i] for i in probs.argmax(dim=-1).tolist()]
    return sum(label == instrument for label in labels), len(labels)
