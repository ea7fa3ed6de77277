"""Train the instrument classifier of the identity metric on rendered stems.

    python -m stemcodec.render --recipe folk-band --limit 80 --variants 2 --out data/classifier-corpus/folk
    python -m stemcodec.render --recipe chorales --limit 80 --variants 2 --out data/classifier-corpus/chorales
    python -m stemcodec.render --recipe solo-piano --limit 40 --variants 1 --out data/classifier-corpus/piano
    python eval/train_classifier.py --write-lines data/classifier-corpus/lines-midi
    python -m stemcodec.render data/classifier-corpus/lines-midi --out data/classifier-corpus/lines
    nice python eval/train_classifier.py data/classifier-corpus/{folk,chorales,piano,lines}

The recipes tie each slot to a register (the bass plays low, the melody instrument high), so
a classifier of their stems alone learns registers as much as timbres. `--write-lines` writes
MIDI files in which bass, guitar, piano and an "other" instrument (programs drawn from each
slot's GM family) play random lines anywhere in a wide range of their own, the cure.

Every `<piece>/<slot>.wav` of a rendered corpus (a folder with meta.json) gives up to
`--per-stem` active 1-s segments labelled with the slot. Pieces are split by their source
score (meta.json `source`): every variant and every recipe of one score lands on the same
side, so no held-out score was heard in training. Prints the held-out accuracy per class and
stores it, with the class list, in the checkpoint's config.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from stemcodec.audio import load_audio
from stemcodec.corpus.instruments import FAMILIES
from stemcodec.errors import AudioError, UserError, cli
from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier
from stemcodec.metrics.seconds import active_seconds, split_seconds
from stemcodec.metrics.timbre import corpus_stats, mfcc_embedding
from stemcodec.slots import DEFAULT_VOCABULARY

OUT = Path(__file__).resolve().parents[1] / "stemcodec" / "assets" / "classifier"


def find_pieces(corpora: Sequence[Path]) -> list[tuple[Path, str]]:
    """(piece folder, source id) of every rendered piece under `corpora`."""
    pieces = []
    for corpus in corpora:
        if not corpus.is_dir():
            raise UserError(f"{corpus} is not a folder; render one with "
                            "`python -m stemcodec.render --recipe folk-band --out FOLDER`")
        for meta in sorted(corpus.rglob("meta.json")):
            try:
                source = json.loads(meta.read_text()).get("source") or meta.parent.name
            except json.JSONDecodeError:
                source = meta.parent.name
            pieces.append((meta.parent, str(source)))
    if not pieces:
        raise UserError(f"no rendered pieces (folders with meta.json) under "
                        f"{', '.join(map(str, corpora))}")
    return pieces


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


def held_out(source: str, share: float) -> bool:
    """A stable split by source: the same score is always on the same side."""
    return int(hashlib.sha256(source.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def segments_of(pieces: list[Path], model: InstrumentClassifier, per_stem: int,
                generator: torch.Generator, desc: str
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel features `[N, 1, M, T]` (float16), MFCC timbre embeddings `[N, 38]` and labels
    `[N]` of up to `per_stem` active seconds of every stem whose slot is one of the classes."""
    cfg = model.config
    feats, mfccs, labels = [], [], []
    for piece in tqdm(pieces, desc=desc, unit="piece", file=sys.stderr):
        for k, slot in enumerate(cfg.classes):
            path = piece / f"{slot}.wav"
            if not path.is_file():
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
    model.eval()
    return torch.cat([model(feats[i: i + 256].float())[1] for i in range(0, feats.shape[0], 256)])


@torch.no_grad()
def per_class_accuracy(model: InstrumentClassifier, feats: torch.Tensor,
                       labels: torch.Tensor) -> dict[str, float | int]:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="*", type=Path, metavar="CORPUS",
                   help="rendered corpora (folders of <piece>/<slot>.wav + meta.json)")
    p.add_argument("--write-lines", type=Path, default=None, metavar="DIR",
                   help="only write --lines MIDI files of random lines into DIR, and exit")
    p.add_argument("--lines", type=int, default=120, help="how many files --write-lines writes")
    p.add_argument("--out", type=Path, default=OUT, help="checkpoint folder to write")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--per-stem", type=int, default=20, help="active seconds drawn per stem")
    p.add_argument("--held-out", type=float, default=0.15, help="share of source scores held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.write_lines is not None:
        written = write_lines(args.write_lines, args.lines, seed=args.seed)
        print(f"wrote {len(written)} MIDI files to {args.write_lines}; render them with "
              f"`python -m stemcodec.render {args.write_lines} --out CORPUS`")
        return 0
    if not args.corpora:
        raise UserError("give the rendered corpora to train on (or --write-lines DIR)")
    if not 0 < args.held_out < 1:
        raise UserError("--held-out must lie between 0 and 1")
    torch.set_num_threads(1)  # many small transforms: more threads only wait on each other
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    pieces = find_pieces(args.corpora)
    present = {p.stem for piece, _ in pieces for p in piece.glob("*.wav")}
    classes = [s for s in DEFAULT_VOCABULARY if s in present]
    if len(classes) < 2:
        raise UserError(f"needs stems of at least two instruments of {', '.join(DEFAULT_VOCABULARY)}, "
                        f"found {', '.join(classes) or 'none'}")
    test = [p for p, source in pieces if held_out(source, args.held_out)]
    train = [p for p, source in pieces if not held_out(source, args.held_out)]
    if not test or not train:
        raise UserError(f"{len(pieces)} pieces are too few to hold out {args.held_out:.0%} of "
                        "their scores; render more")
    model = InstrumentClassifier(ClassifierConfig(classes=classes))
    x_train, mfcc_train, y_train = segments_of(train, model, args.per_stem, generator,
                                               "train pieces")
    x_test, _, y_test = segments_of(test, model, args.per_stem, generator, "held-out pieces")
    torch.set_num_threads(args.threads)
    counts = torch.bincount(y_train, minlength=len(classes)).float()
    weights = counts.sum() / (len(classes) * counts.clamp_min(1))  # balance the classes

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    steps = args.epochs * math.ceil(x_train.shape[0] / args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    bar = tqdm(total=steps, desc="train", unit="step", file=sys.stderr)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(x_train.shape[0], generator=generator)
        for first in range(0, order.numel(), args.batch):
            idx = order[first: first + args.batch]
            logits, _ = model(augment(x_train[idx].float(), generator))
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()

    accuracy = per_class_accuracy(model, x_test, y_test)
    model.config.info = {
        "held_out_accuracy": accuracy,
        "train_accuracy": per_class_accuracy(model, x_train, y_train),
        "train_pieces": len(train), "held_out_pieces": len(test),
        "corpora": [str(c) for c in args.corpora], "epochs": args.epochs,
        "per_stem": args.per_stem, "seed": args.seed,
        # fixed statistics that standardise the timbre embeddings (metrics/timbre.py)
        "embedding_stats": corpus_stats(embeddings_of(model, x_train)),
        "mfcc_stats": corpus_stats(mfcc_train),
    }
    model.save(args.out)
    for name in classes:
        print(f"  {name:8s} {accuracy.get(name, float('nan')):.3f}")
    print(f"held-out accuracy {accuracy['overall']:.3f} on {accuracy['segments']} seconds of "
          f"{len(test)} pieces ({len(train)} in training); saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
