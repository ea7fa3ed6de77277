"""The data and checks of the instrument classifier's training (the identity metric's
classifier, stemcodec/metrics/classifier.py); the loop is eval/train_classifier.py.

The recipes tie each slot to a register (the bass plays low, the melody instrument high), so
a classifier of their stems alone learns registers as much as timbres: `write_lines` writes
MIDI files of random lines in a wide range of each slot's own, the cure. `training_pieces`
splits rendered pieces by their piece key (stemcodec.corpus.layout), as the trainers split
them, so no held-out tune was heard in training; `segments_of` draws the labelled seconds (the slot, and the GM family of the stem's program
from meta.json for the second head), clean, through Opus or a codec, and augmented
(classifier_augment.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from stemcodec.audio import load_audio
from stemcodec.corpus.instruments import FAMILIES
from stemcodec.corpus.layout import Piece, find_pieces, split_pieces
from stemcodec.errors import AudioError, UserError
from stemcodec.evaluation.classifier_augment import RoundTrips, random_gain, reverb
from stemcodec.metrics.classifier import OBJECT_FAMILIES, InstrumentClassifier
from stemcodec.metrics.identity import slot_object_families
from stemcodec.metrics.seconds import active_seconds, split_seconds
from stemcodec.metrics.timbre import mfcc_embedding
from stemcodec.slots import DEFAULT_VOCABULARY

# lowest and highest centre pitch of a random line per slot (the line spans +-7 semitones)
LINE_CENTRES = {"bass": (33, 57), "guitar": (45, 76), "piano": (40, 84), "other": (45, 84)}
SCALES = ((0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10), (0, 2, 3, 5, 7, 9, 10))


def write_lines(out: Path, count: int, seconds: float = 30.0, seed: int = 0) -> list[Path]:
    """`count` MIDI files, each with one random line per pitched slot (see the docstring):
    a walk on a scale with some leaps, note values from a sixteenth to a half note, and on
    piano and guitar now and then a chord of two or three scale tones."""
    import numpy as np
    import pretty_midi

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for n in range(count):
        tempo = float(rng.uniform(70, 160))
        beat = 60.0 / tempo
        tonic, scale = int(rng.integers(0, 12)), SCALES[int(rng.integers(len(SCALES)))]
        pitches = [p for p in range(21, 109) if (p - tonic) % 12 in scale]
        midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
        for slot, (low, high) in LINE_CENTRES.items():
            inst = pretty_midi.Instrument(program=int(rng.choice(sorted(FAMILIES[slot]))))
            centre = int(rng.integers(low, high + 1))
            step = int(np.argmin([abs(p - centre) for p in pitches]))
            t = 0.0
            while t < seconds - 1:
                length = float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0])) * beat
                if rng.random() < 0.1:
                    t += length  # a rest
                    continue
                step += int(rng.choice([-4, -2, -1, -1, 0, 1, 1, 2, 4]))
                step = min(max(step, 0), len(pitches) - 1)
                if abs(pitches[step] - centre) > 7:
                    step += -2 if pitches[step] > centre else 2
                chord = [0] if slot not in ("piano", "guitar") or rng.random() < 0.7 else [0, 2, 4][
                    : int(rng.integers(2, 4))]
                velocity = int(rng.integers(60, 110))
                for k in chord:
                    pitch = pitches[min(step + k, len(pitches) - 1)]
                    inst.notes.append(pretty_midi.Note(velocity, pitch, t, t + 0.95 * length))
                t += length
            midi.instruments.append(inst)
        path = out / f"lines-{seed}-{n:04d}.mid"
        midi.write(str(path))
        written.append(path)
    return written


def training_pieces(corpora: Sequence[Path], held_out: float
                    ) -> tuple[list[str], list[Piece], list[Piece]]:
    """(classes: the default vocabulary's instruments that have stems, train pieces, held-out
    pieces) of rendered corpora, split by piece key; UserError when either side is empty."""
    pieces = find_pieces(corpora)
    present = {slot for piece in pieces for slot in piece.stems}
    classes = [s for s in DEFAULT_VOCABULARY if s in present]
    if len(classes) < 2:
        raise UserError(f"needs stems of at least two instruments of {', '.join(DEFAULT_VOCABULARY)}, "
                        f"found {', '.join(classes) or 'none'}")
    split = split_pieces(pieces, held_out)
    train, test = split["train"], split["valid"]
    if not test or not train:
        raise UserError(f"{len(pieces)} pieces are too few to hold out {held_out:.0%} of "
                        "their scores; render more")
    return classes, train, test


@dataclass
class Seconds:
    """Labelled seconds: the log-mel features of each version of them, and their labels."""
    feats: dict[str, torch.Tensor]  # version ("clean", "opus", "view1", ...) -> [N, 1, M, T] f16
    mfcc: torch.Tensor              # [N, 38] MFCC timbre embeddings of the clean seconds
    labels: torch.Tensor            # [N] slot class
    objects: torch.Tensor           # [N] index in OBJECT_FAMILIES, -1 where meta.json says none

    def stacked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(every version's features one after the other, their labels, their objects)."""
        n = len(self.feats)
        return (torch.cat(list(self.feats.values())), self.labels.repeat(n),
                self.objects.repeat(n))


def object_labels(piece: Piece) -> dict[str, int]:
    """{slot: index in OBJECT_FAMILIES} of the stems whose GM program the piece's meta.json
    records (`stem_instruments`)."""
    return {slot: OBJECT_FAMILIES.index(family)
            for slot, family in slot_object_families(piece.meta).items()
            if family in OBJECT_FAMILIES}


class StemSources:
    """The versions of one stem a training second may be cut from, each cut into seconds
    from the same offset once, when first asked for: (kind, room) with kind "clean" or a
    round trip of `trips`, room: in one room drawn for this stem and kind."""

    def __init__(self, wav: torch.Tensor, path: Path, offset: int, rate: int, seconds: float,
                 trips: RoundTrips | None, generator: torch.Generator):
        self.wav, self.path, self.offset, self.rate, self.seconds = wav, path, offset, rate, seconds
        self.trips, self.generator = trips, generator
        self._wavs: dict[tuple[str, bool], torch.Tensor] = {("clean", False): wav}
        self._segments: dict[tuple[str, bool], torch.Tensor] = {}

    def audio(self, kind: str, room: bool = False) -> torch.Tensor:
        """The whole version `[1, S]`, S the clean stem's length."""
        if (kind, room) not in self._wavs:
            if room:
                x = reverb(self.audio(kind), self.rate, self.generator)
            else:
                x = self.trips.get(kind, self.path)
                length = self.wav.shape[-1]
                x = torch.nn.functional.pad(x, (0, max(0, length - x.shape[-1])))[:, :length]
            self._wavs[(kind, room)] = x
        return self._wavs[(kind, room)]

    def segments(self, kind: str, room: bool = False) -> torch.Tensor:
        """The version's seconds `[N, L]` from the offset (the clean stem's seconds)."""
        if (kind, room) not in self._segments:
            self._segments[(kind, room)] = split_seconds(
                self.audio(kind, room)[:, self.offset:], self.rate, self.seconds)
        return self._segments[(kind, room)]


def segments_of(pieces: list[Piece], model: InstrumentClassifier, per_stem: int,
                generator: torch.Generator, desc: str, trips: RoundTrips | None = None,
                versions: Sequence[str] = (), views: int = 0, coded_share: float = 0.5,
                reverb_share: float = 0.5) -> Seconds:
    """Up to `per_stem` active seconds of every stem whose slot is one of the classes, as
    features of: the clean second; each of `versions` (round trips of `trips`: the same
    seconds through Opus or a codec, for validation); and `views` augmented copies (for
    training), each drawn per second: cut from a round trip of `trips` with probability
    `coded_share` (else the clean stem), in a room with probability `reverb_share` (one room
    per stem and source, applied to the whole stem, so a second carries the tail of the one
    before), then a random gain with a ramp (classifier_augment)."""
    cfg = model.config
    rate, length = cfg.sample_rate, cfg.segment_samples
    feats: dict[str, list[torch.Tensor]] = {"clean": [], **{v: [] for v in versions},
                                            **{f"view{i + 1}": [] for i in range(views)}}
    mfccs, labels, objects = [], [], []
    for piece in tqdm(pieces, desc=desc, unit="piece", file=sys.stderr):
        known = object_labels(piece)
        for k, slot in enumerate(cfg.classes):
            path = piece.stems.get(slot)
            if path is None:
                continue
            try:
                wav, _ = load_audio(path, rate, 1)
            except AudioError as exc:
                print(f"skipped {path}: {exc}", file=sys.stderr)
                continue
            # a random start so segment borders fall anywhere in the bar
            offset = int(torch.randint(0, length, (1,), generator=generator))
            segments = split_seconds(wav[:, offset:], rate, cfg.segment_seconds)
            active = active_seconds(segments).nonzero().flatten()
            pick = active[torch.randperm(active.numel(), generator=generator)[:per_stem]]
            if not pick.numel():
                continue
            stem = StemSources(wav, path, offset, rate, cfg.segment_seconds, trips, generator)
            feats["clean"].append(model.features(segments[pick], rate).half())
            for version in versions:
                feats[version].append(model.features(stem.segments(version)[pick], rate).half())
            kinds = trips.kinds if trips is not None else ()
            for i in range(views):
                rows = []
                for second in pick.tolist():
                    coded = kinds and float(torch.rand(1, generator=generator)) < coded_share
                    kind = kinds[int(torch.randint(0, len(kinds), (1,), generator=generator))] \
                        if coded else "clean"
                    room = float(torch.rand(1, generator=generator)) < reverb_share
                    rows.append(random_gain(stem.segments(kind, room)[second], generator))
                feats[f"view{i + 1}"].append(model.features(torch.stack(rows), rate).half())
            mfccs.append(mfcc_embedding(segments[pick], rate))
            labels.append(torch.full((pick.numel(),), k))
            objects.append(torch.full((pick.numel(),), known.get(slot, -1)))
    if not labels:
        raise UserError(f"no active stem of {', '.join(cfg.classes)} in the {desc} pieces")
    return Seconds({v: torch.cat(f) for v, f in feats.items()}, torch.cat(mfccs),
                   torch.cat(labels), torch.cat(objects))


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SpecAugment-light: one band of up to 8 mel bins and one span of up to 20 frames set to
    the segment's minimum, and a random circular shift in time."""
    x = x.clone()
    n, _, mels, frames = x.shape
    floor = x.amin(dim=(1, 2, 3))
    for i in range(n):
        f0, fw = torch.randint(0, mels, (1,), generator=generator), torch.randint(0, 9, (1,), generator=generator)
        t0, tw = torch.randint(0, frames, (1,), generator=generator), torch.randint(0, 21, (1,), generator=generator)
        x[i, :, f0: f0 + fw] = floor[i]
        x[i, :, :, t0: t0 + tw] = floor[i]
    shift = int(torch.randint(0, frames, (1,), generator=generator))
    return x.roll(shift, dims=-1)


@torch.no_grad()
def embeddings_of(model: InstrumentClassifier, feats: torch.Tensor) -> torch.Tensor:
    """The classifier's embeddings `[N, E]` of log-mel features `[N, 1, M, T]`."""
    model.eval()
    return torch.cat([model(feats[i: i + 256].float())[1] for i in range(0, feats.shape[0], 256)])


def _accuracy(preds: torch.Tensor, labels: torch.Tensor,
              names: Sequence[str]) -> dict[str, float | int]:
    """Accuracy per class, "overall" and the number of "segments" (labels -1 left out)."""
    keep = labels >= 0
    preds, labels = preds[keep], labels[keep]
    result: dict[str, float | int] = {}
    for k, name in enumerate(names):
        mask = labels == k
        if mask.any():
            result[name] = round(float((preds[mask] == k).float().mean()), 4)
    if labels.numel():
        result["overall"] = round(float((preds == labels).float().mean()), 4)
    result["segments"] = int(labels.numel())
    return result


@torch.no_grad()
def per_class_accuracy(model: InstrumentClassifier, feats: torch.Tensor,
                       labels: torch.Tensor) -> dict[str, float | int]:
    """Accuracy per class, "overall" and the number of "segments"."""
    model.eval()
    preds = torch.cat([model(feats[i: i + 256].float())[0].argmax(-1)
                       for i in range(0, feats.shape[0], 256)])
    return _accuracy(preds, labels, model.config.classes)


@torch.no_grad()
def object_accuracy(model: InstrumentClassifier, feats: torch.Tensor,
                    objects: torch.Tensor) -> dict[str, float | int]:
    """The GM-family head's accuracy per family, "overall" and "segments" (seconds whose
    family is unknown, -1, left out); {} for a classifier without the head."""
    if not model.has_objects:
        return {}
    model.eval()
    preds = torch.cat([model.object_logits(model(feats[i: i + 256].float())[1]).argmax(-1)
                       for i in range(0, feats.shape[0], 256)])
    return _accuracy(preds, objects, model.config.object_families)


def accuracy_table(columns: dict[str, dict[str, float | int]], names: Sequence[str],
                   first: str = "class") -> str:
    """A text table: one row per name of `names` found in a column and "overall", one column
    per entry of `columns` ({column: accuracy dict}), "-" where a column lacks the row, and a
    last row with the seconds counted."""
    rows = [n for n in (*names, "overall") if any(n in c for c in columns.values())]
    width = max([len(first), *map(len, rows)]) + 2
    lines = [f"{first:{width}s}" + "".join(f"{c:>13s}" for c in columns)]
    for name in rows:
        cells = [c.get(name) for c in columns.values()]
        lines.append(f"{name:{width}s}" + "".join(
            f"{'-':>13s}" if v is None else f"{v:13.3f}" for v in cells))
    lines.append(f"{'seconds':{width}s}" + "".join(f"{c.get('segments', 0):13d}"
                                                  for c in columns.values()))
    return "\n".join(lines)
