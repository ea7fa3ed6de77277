"""Instrument identity of a stem, second by second, from the instrument classifier.

Two levels. The family (the slot: drums, bass, guitar, piano, other):

    identity accuracy = share of active seconds labelled as the slot's instrument
    switch rate       = share of neighbouring active-second pairs whose label changes

and the object (the GM family of the instrument playing: piano, organ, strings, brass, reed,
pipe, synth lead, ..., drums; the classifier's second head), so that a violin that turns into
a trumpet inside "other" counts:

    object identity    = share of active seconds whose GM family is that of the slot's chosen
                         instrument (a generation's meta.json "objects", a rendered piece's
                         "stem_instruments")
    object switch rate = share of neighbouring active-second pairs whose GM family changes

A stem that keeps its instrument scores accuracy 1 and switch rate 0; a guitar that drifts
into an organ halfway scores about 0.5 and 1 / (seconds - 1). A classifier without the second
head (one saved before it) gives no object figures (None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ..corpus.instruments import gm_group
from ..objects import UNKNOWN_ID, object_id
from .classifier import InstrumentClassifier
from .seconds import active_seconds, split_seconds

NO_OBJECT_HEAD = ("object identity / switch rate: n/a (the classifier has no GM-family head; "
                  "retrain it with eval/train_classifier.py)")


@dataclass
class SecondLabels:
    """Per-second classifier output for one stem (active seconds only)."""
    labels: list[str]          # label of each active second
    index: list[int]           # which second of the stem each label belongs to
    probs: torch.Tensor        # [N, classes]
    embeddings: torch.Tensor   # [N, D]
    objects: list[str] | None = None  # GM family of each active second; None: no such head


def label_seconds(model: InstrumentClassifier, wav: torch.Tensor, rate: int) -> SecondLabels:
    """Classify every active second of `wav` `[C, S]` (both levels, where the model has both)."""
    segments = split_seconds(wav, rate, model.config.segment_seconds)  # [N, L]
    active = active_seconds(segments)
    index = active.nonzero().flatten().tolist()
    probs, object_probs, embs = model.predict_all(segments[active], rate)
    names = model.config.classes
    objects = None
    if object_probs is not None:
        families = model.config.object_families
        objects = [families[i] for i in object_probs.argmax(dim=-1).tolist()]
    return SecondLabels([names[i] for i in probs.argmax(dim=-1).tolist()], index, probs, embs,
                        objects)


def identity_accuracy(seconds: SecondLabels, instrument: str) -> float | None:
    """Share of active seconds labelled `instrument`; None without active seconds."""
    if not seconds.labels:
        return None
    return sum(label == instrument for label in seconds.labels) / len(seconds.labels)


def _switch_share(index: Sequence[int], labels: Sequence[str]) -> float | None:
    pairs = [(a, b) for (i, a), (j, b) in zip(zip(index, labels), zip(index[1:], labels[1:]))
             if j == i + 1]
    if not pairs:
        return None
    return sum(a != b for a, b in pairs) / len(pairs)


def switch_rate(seconds: SecondLabels) -> float | None:
    """Share of neighbouring active seconds (i, i + 1) with different labels; None when the
    stem has no such pair."""
    return _switch_share(seconds.index, seconds.labels)


def object_identity(seconds: SecondLabels, family: str | None) -> float | None:
    """Share of active seconds whose GM family is `family`; None without the second head,
    without a family to compare with, or without active seconds."""
    if seconds.objects is None or family is None or not seconds.objects:
        return None
    return sum(f == family for f in seconds.objects) / len(seconds.objects)


def object_switch_rate(seconds: SecondLabels) -> float | None:
    """Share of neighbouring active seconds whose GM family changes; None without the second
    head or without such a pair."""
    if seconds.objects is None:
        return None
    return _switch_share(seconds.index, seconds.objects)


def object_family(name: str | None) -> str | None:
    """The GM family of an instrument object (stemcodec.objects): `nylon-guitar` -> guitar,
    `violin` -> strings, `flute` -> pipe, `tr-808-kit` -> drums; None for unknown names."""
    index = object_id(name) if name else UNKNOWN_ID
    if index == UNKNOWN_ID:
        return None
    return gm_group(index - 1) if index <= 128 else "drums"


def slot_object_families(meta: Mapping | None) -> dict[str, str]:
    """{slot: GM family of its chosen instrument} of a piece's meta.json: a generation's
    `objects` ({slot: object name or null}) or else a rendered piece's `stem_instruments`
    ({slot: {"program": p, "drum": bool}}); slots with nothing known are left out."""
    if not isinstance(meta, Mapping):
        return {}
    out: dict[str, str] = {}
    objects = meta.get("objects")
    if isinstance(objects, Mapping):
        for slot, name in objects.items():
            family = object_family(name) if isinstance(name, str) else None
            if family is not None:
                out[slot] = family
        return out
    labels = meta.get("stem_instruments")
    if isinstance(labels, Mapping):
        for slot, entry in labels.items():
            if isinstance(entry, Mapping) and isinstance(entry.get("program"), int):
                drum = bool(entry.get("drum"))
                if drum or 0 <= entry["program"] < 128:
                    out[slot] = gm_group(entry["program"], drum)
    return out


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

