"""The data and checks of the instrument classifier's training (the identity metric's
classifier, stemcodec/metrics/classifier.py); the loop is eval/train_classifier.py.

The recipes tie each slot to a register (the bass plays low, the melody instrument high), so
a classifier of their stems alone learns registers as much as timbres: `write_lines` writes
MIDI files of random lines in a wide range of each slot's own, the cure. `training_pieces`
splits rendered pieces by their piece key (stemcodec.corpus.layout), as the trainers split
them, so no held-out tune was heard in training; `segments_of` draws the labelled seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from stemcodec.audio import load_audio
from stemcodec.corpus.instruments import FAMILIES
from stemcodec.corpus.layout import Piece, find_pieces, split_pieces
from stemcodec.errors import AudioError, UserError
from stemcodec.metrics.classifier import InstrumentClassifier
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


def segments_of(pieces: list[Piece], model: InstrumentClassifier, per_stem: int,
                generator: torch.Generator, desc: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel features `[N, 1, M, T]` (float16), MFCC timbre embeddings `[N, 38]` and labels
    `[N]` of up to `per_stem` active seconds of every stem whose slot is one of the classes."""
    cfg = model.config
    feats, mfccs, labels = [], [], []
    for piece in tqdm(pieces, desc=desc, unit="piece", file=sys.stderr):
        for k, slot in enumerate(cfg.classes):
            path = piece.stems.get(slot)
            if path is None:
                continue
            try:
                wav, _ = load_audio(path, cfg.sample_rate, 1)
            except AudioError as exc:
                print(f"skipped {path}: {exc}", file=sys.stderr)
                continue
            # a random start so segment borders fall anywhere in the bar
            offset = int(torch.randint(0, cfg.segment_samples, (1,), generator=generator))
            segments = split_seconds(wav[:, offset:], cfg.sample_rate, cfg.segment_seconds)
            segments = segments[active_seconds(segments)]
            pick = torch.randperm(segments.shape[0], generator=generator)[:per_stem]
            if pick.numel():
                feats.append(model.features(segments[pick], cfg.sample_rate).half())
                mfccs.append(mfcc_embedding(segments[pick], cfg.sample_rate))
                labels.append(torch.full((pick.numel(),), k))
    if not feats:
        raise UserError(f"no active stem of {', '.join(cfg.classes)} in the {desc} pieces")
    return torch.cat(feats), torch.cat(mfccs), torch.cat(labels)


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


@torch.no_grad()
def per_class_accuracy(model: InstrumentClassifier, feats: torch.Tensor,
                       labels: torch.Tensor) -> dict[str, float | int]:
    """Accuracy per class, "overall" and the number of "segments"."""
    model.eval()
    preds = torch.cat([model(feats[i: i + 256].float())[0].argmax(-1)
                       for i in range(0, feats.shape[0], 256)])
    result: dict[str, float | int] = {}
    for k, name in enumerate(model.config.classes):
        mask = labels == k
        if mask.any():
            result[name] = round(float((preds[mask] == k).float().mean()), 4)
    result["overall"] = round(float((preds == labels).float().mean()), 4)
    result["segments"] = int(labels.numel())
    return result
