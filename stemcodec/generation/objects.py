"""Each slot's instrument object in a generation: asked for by name (`--instrument
guitar=nylon-guitar`), by a reference clip (`--timbre guitar=clip.wav`), or drawn.

A slot of a model with objects that is asked for neither plays an object of its family drawn
from those its training data had (the checkpoint's `training.objects`), seeded by the
generation's seed and the slot's name alone: the same seed draws the same instrument, whatever
the other slots. A model that does not record them draws from the family's GM objects; a slot
whose data had no labelled stem (separated songs) stays unconditioned.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..conditions import encode_file
from ..errors import UserError
from ..objects import by_family, check_object, object_id, object_label
from ..slots import SlotSpec

# the longest reference clip read (frames beyond it add little to a mean over frames)
MAX_TIMBRE_SECONDS = 30.0

Instruments = Mapping[str, str] | Sequence[str] | str  # {slot: name}, or "slot=name,..." items


def instrument_items(value: Instruments | None) -> list[str]:
    """`instrument` as the CLI's `SLOT=NAME` items: a mapping, a comma-separated text, or
    a list of either (`--instrument` may be repeated)."""
    if not value:
        return []
    if isinstance(value, Mapping):
        return [f"{slot}={name}" for slot, name in value.items()]
    texts = [value] if isinstance(value, str) else [str(v) for v in value]
    return [item.strip() for text in texts for item in text.split(",") if item.strip()]


@dataclass
class ObjectPlan:
    """What a generation's slots are asked to play, checked against the model."""

    slots: tuple[str, ...]
    names: dict[str, str] = field(default_factory=dict)  # slot -> asked object
    timbres: dict[str, torch.Tensor] = field(default_factory=dict)  # slot -> codes [Q, R]
    timbre_files: dict[str, str] = field(default_factory=dict)
    choices: dict[str, list[str]] = field(default_factory=dict)  # slot -> what a draw picks from

    def chosen(self, seed: int) -> dict[str, str | None]:
        """{slot: object name} for this seed: asked, drawn, or None (a reference clip alone,
        or nothing to draw from)."""
        out: dict[str, str | None] = {}
        for slot in self.slots:
            if slot in self.names:
                out[slot] = self.names[slot]
            elif slot in self.timbres or not self.choices.get(slot):
                out[slot] = None
            else:
                rng = np.random.default_rng([int(seed), zlib.crc32(slot.encode())])
                options = self.choices[slot]
                out[slot] = options[int(rng.integers(len(options)))]
        return out

    def objects(self, seeds: Sequence[int], device: torch.device):
        """The sampler's `Objects` for one row per seed."""
        from ..model import Objects
        ids = torch.tensor([[object_id(n) if n else 0 for n in self.chosen(s).values()]
                            for s in seeds], dtype=torch.long, device=device)  # (B, K)
        if not self.timbres:
            return Objects(ids)
        K, B = len(self.slots), len(seeds)
        Q = next(iter(self.timbres.values())).shape[0]
        R = max(t.shape[-1] for t in self.timbres.values())
        reference = torch.zeros(B, K, Q, R, dtype=torch.long, device=device)
        mask = torch.zeros(B, K, R, dtype=torch.bool, device=device)
        for k, slot in enumerate(self.slots):
            if slot in self.timbres:
                codes = self.timbres[slot].to(device)
                reference[:, k, :, :codes.shape[-1]] = codes
                mask[:, k, :codes.shape[-1]] = True
        return Objects(ids, reference, mask)

    def meta(self, seed: int) -> dict:
        """meta.json's record: each slot's object (None: unconditioned or a clip alone) and
        the reference clips."""
        out: dict = {"objects": self.chosen(seed)}
        if self.timbre_files:
            out["timbres"] = dict(self.timbre_files)
        return out


def plan_objects(model, codec, slots: SlotSpec, instrument: Instruments | None,
                 timbre: dict[str, Path], what: str) -> ObjectPlan | None:
    """The checked ObjectPlan of a model with objects (None for one without, which must be
    asked for none); one-line UserErrors for every mistake."""
    items = instrument_items(instrument)
    if not model.config.objects:
        if items or timbre:
            flag = "--instrument" if items else "--timbre"
            raise UserError(f"{flag}: {what} has no instrument objects (it was trained "
                            "without model.objects); drop --instrument and --timbre")
        return None
    trained = (model.training_info or {}).get("objects")
    families = by_family()
    plan = ObjectPlan(slots.names)
    for item in items:
        slot, sep, name = item.partition("=")
        slot, name = slot.strip(), name.strip()
        if not sep or not slot or not name:
            raise UserError(f"--instrument {item}: use SLOT=NAME, e.g. guitar=nylon-guitar "
                            "(names: --list-instruments)")
        if slot not in slots.names:
            raise UserError(f"--instrument {item}: '{slot}' is not among --slots {slots}")
        if slot in plan.names:
            raise UserError(f"--instrument {slot}= is given twice")
        check_object(slot, name)
        if trained is not None and name not in trained.get(slot, []):
            heard = ", ".join(trained.get(slot, [])) or "none labelled"
            raise UserError(f"--instrument {item}: {what} never heard {name} in training; "
                            f"its {slot} instruments: {heard}")
        plan.names[slot] = name
    frames = int(MAX_TIMBRE_SECONDS * codec.frame_rate)
    for slot, path in timbre.items():
        option = f"--timbre {slot}={path}"
        codes = encode_file(codec, Path(path), option, frames)  # [Q, R]
        if codes.shape[-1] < 1:
            raise UserError(f"{option}: too short for one codec frame")
        plan.timbres[slot], plan.timbre_files[slot] = codes, str(path)
    for slot in slots.names:
        plan.choices[slot] = list(trained.get(slot, [])) if trained is not None \
            else list(families.get(slot, []))
    return plan


def lane_labels(meta: dict) -> dict[str, str]:
    """stems.png's lane names: `guitar: nylon guitar`, `piano: like clip.wav`; the slot
    alone where nothing is known."""
    objects, timbres = meta.get("objects") or {}, meta.get("timbres") or {}
    labels = {}
    for slot in meta.get("slots", []):
        if objects.get(slot):
            labels[slot] = f"{slot}: {object_label(objects[slot])}"
        elif slot in timbres:
            labels[slot] = f"{slot}: like {Path(timbres[slot]).name}"
    return labels


def list_instruments() -> str:
    """`--list-instruments`: the object names, one family per paragraph."""
    import textwrap
    lines = []
    for family, names in by_family().items():
        lines.append(f"{family}:")
        lines += textwrap.wrap(", ".join(names), 96, initial_indent="  ",
                               subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines)
