"""Train the instrument classifier of the identity metric on rendered stems.

    python -m stemcodec.render --recipe folk-band --limit 80 --variants 2 --out data/classifier-corpus/folk
    python -m stemcodec.render --recipe chorales --limit 80 --variants 2 --out data/classifier-corpus/chorales
    python -m stemcodec.render --recipe solo-piano --limit 40 --variants 1 --out data/classifier-corpus/piano
    python eval/train_classifier.py --write-lines data/classifier-corpus/lines-midi
    python -m stemcodec.render data/classifier-corpus/lines-midi --out data/classifier-corpus/lines
    python -m stemcodec.render --recipe folk-band --limit 80 --variants 1 \
        --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2 --out data/classifier-corpus/timgm
    python -m stemcodec.render --recipe folk-band --skip 240 --limit 24 --variants 1 \
        --soundfont /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 --out data/classifier-corpus/musescore
    nice python eval/train_classifier.py data/classifier-corpus/{folk,chorales,piano,lines,timgm} \
        --valid data/classifier-corpus/musescore

The recipes tie each slot to a register (the bass plays low, the melody instrument high), so
a classifier of their stems alone learns registers as much as timbres. `--write-lines` writes
MIDI files in which bass, guitar, piano and an "other" instrument (programs drawn from each
slot's GM family) play random lines anywhere in a wide range of their own, the cure.

Every `<piece>/<slot>.wav` of a rendered corpus gives up to `--per-stem` active 1-s segments
labelled with the slot. Pieces are split by their piece key (stemcodec.corpus.layout), as the
trainers split them: every variant, part and recipe of one tune lands on the same side, so
no held-out tune was heard in training. Prints the held-out accuracy per class and
stores it, with the class list, in the checkpoint's config.json.

Two heads: the slot (drums, bass, guitar, piano, other) and the General MIDI family of the
stem's program (piano, chromatic percussion, organ, ..., drums for the kits), read from each
piece's meta.json (`stem_instruments`); seconds of stems without a program train the first.

What it will hear is not what a SoundFont renders: besides each clean second, `--views`
augmented copies of it (default 1) are cut from the stem through Opus at `--opus-kbps` (6)
or through `--codec` (off by default) with probability `--coded-share`, in a room (a
convolution with decaying noise) with probability `--reverb-share`, at a random gain with a
ramp (stemcodec/evaluation/classifier_augment.py). The round trips are made once per stem and
kept in `--cache` (they are slow). Corpora rendered with other SoundFonts
(`python -m stemcodec.render --soundfont PATH`) are simply more corpora.

`--valid CORPUS` (repeatable): a corpus rendered with a SoundFont held out of training; up to
`--per-stem` active seconds of each of its stems are classified clean and through Opus at
`--opus-kbps`, per slot and per GM family; its tunes are left out of training. The table goes to the terminal and, with the
held-out figures, to the checkpoint's config.json (`info`).

The data and checks are stemcodec/evaluation/classifier_training.py; the loop is here.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from stemcodec.corpus.layout import find_pieces
from stemcodec.errors import UserError, cli
from stemcodec.evaluation.classifier_augment import RoundTrips
from stemcodec.evaluation.classifier_training import (
    accuracy_table,
    augment,
    embeddings_of,
    object_accuracy,
    object_labels,
    per_class_accuracy,
    segments_of,
    training_pieces,
    write_lines,
)
from stemcodec.metrics.classifier import OBJECT_FAMILIES, ClassifierConfig, InstrumentClassifier
from stemcodec.metrics.timbre import corpus_stats

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "stemcodec" / "assets" / "classifier"
CACHE = ROOT / "data" / "classifier-corpus" / "round-trips"
TARGETS = {"valid": 0.95, "valid_opus": 0.9}  # issue 16: per family, held-out SoundFont


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="*", type=Path, metavar="CORPUS",
                   help="rendered corpora (folders of <piece>/<slot>.wav)")
    p.add_argument("--write-lines", type=Path, default=None, metavar="DIR",
                   help="only write --lines MIDI files of random lines into DIR, and exit")
    p.add_argument("--lines", type=int, default=120, help="how many files --write-lines writes")
    p.add_argument("--out", type=Path, default=OUT, help="checkpoint folder to write")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--per-stem", type=int, default=20, help="active seconds drawn per stem")
    p.add_argument("--held-out", type=float, default=0.15, help="share of tunes held out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--valid", action="append", type=Path, default=[], metavar="CORPUS",
                   help="a corpus rendered with a held-out SoundFont; repeat")
    p.add_argument("--views", type=int, default=1,
                   help="augmented copies of each training second (0: clean only)")
    p.add_argument("--coded-share", type=float, default=0.5,
                   help="share of augmented copies cut from a round trip (Opus, --codec)")
    p.add_argument("--reverb-share", type=float, default=0.5,
                   help="share of augmented copies in a room")
    p.add_argument("--opus-kbps", type=float, default=6.0)
    p.add_argument("--codec", default=None, metavar="NAME_OR_PATH",
                   help="also train on this codec's reconstructions (default: none)")
    p.add_argument("--cache", type=Path, default=CACHE,
                   help="where round trips are kept (none: not kept)")
    return p


def print_tables(columns: dict, object_columns: dict, model: InstrumentClassifier,
                 opus: str) -> None:
    """The accuracy per slot family and per GM family (where the model has that head), one
    column per set of seconds (held-out, valid, valid through Opus)."""
    def named(cols: dict) -> dict:
        return {k.replace("valid_opus", opus): v for k, v in cols.items()}
    print(accuracy_table(named(columns), model.config.classes, "slot family"))
    if model.has_objects:
        print("\n" + accuracy_table(named(object_columns), model.config.object_families,
                                    "GM family"))


def under_target(columns: dict, classes: Sequence[str]) -> list[str]:
    """`guitar 0.914 (valid)` for every slot family under its TARGETS figure."""
    return [f"{name} {columns[where][name]:.3f} ({where.replace('_', ' ')})"
            for where, target in TARGETS.items() for name in classes
            if name in columns[where] and columns[where][name] < target]


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
    for name in ("coded_share", "reverb_share"):
        if not 0 <= getattr(args, name) <= 1:
            raise UserError(f"--{name.replace('_', '-')} must lie between 0 and 1")
    if args.views < 0:
        raise UserError("--views must be 0 or more")
    torch.set_num_threads(1)  # many small transforms: more threads only wait on each other
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    classes, train, test = training_pieces(args.corpora, args.held_out)
    valid = find_pieces(args.valid) if args.valid else []
    valid_keys = {p.key for p in valid}
    dropped = [p for p in train if p.key in valid_keys]
    train = [p for p in train if p.key not in valid_keys]
    if dropped:
        print(f"left {len(dropped)} training pieces out: their tunes are in --valid",
              file=sys.stderr)
    if not train:
        raise UserError("every training tune is also in --valid; render other tunes for it")
    labelled = any(object_labels(p) for p in train)
    model = InstrumentClassifier(ClassifierConfig(
        classes=classes, object_families=list(OBJECT_FAMILIES) if labelled else []))
    if not labelled:
        print("no meta.json records a stem's program: the classifier gets no GM-family head",
              file=sys.stderr)
    codec = None
    if args.codec is not None:
        from stemcodec.codec import load_codec
        codec = load_codec(args.codec)
    cache = None if str(args.cache).lower() == "none" else args.cache
    trips = RoundTrips(model.config.sample_rate, cache, args.opus_kbps, codec)
    data = segments_of(train, model, args.per_stem, generator, "train pieces", trips,
                       views=args.views, coded_share=args.coded_share,
                       reverb_share=args.reverb_share)
    x_train, y_train, o_train = data.stacked()
    held = segments_of(test, model, args.per_stem, generator, "held-out pieces")
    x_test, y_test, o_test = held.stacked()
    checks = None
    if valid:
        checks = segments_of(valid, model, args.per_stem, generator, "valid pieces", trips,
                             versions=("opus",))
    torch.set_num_threads(args.threads)
    counts = torch.bincount(y_train, minlength=len(classes)).float()
    weights = counts.sum() / (len(classes) * counts.clamp_min(1))  # balance the classes
    families = len(model.config.object_families)
    object_weights = None
    if families:  # the GM families are far less even: balanced by the square root
        known = o_train[o_train >= 0]
        found = torch.bincount(known, minlength=families).float()
        object_weights = (found.sum() / (families * found.clamp_min(1))).sqrt()

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)
    steps = args.epochs * math.ceil(x_train.shape[0] / args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    bar = tqdm(total=steps, desc="train", unit="step", file=sys.stderr)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(x_train.shape[0], generator=generator)
        for first in range(0, order.numel(), args.batch):
            idx = order[first: first + args.batch]
            logits, emb = model(augment(x_train[idx].float(), generator))
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx], weight=weights)
            if families and (o_train[idx] >= 0).any():
                loss = loss + torch.nn.functional.cross_entropy(
                    model.object_logits(emb), o_train[idx], weight=object_weights,
                    ignore_index=-1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
    bar.close()

    clean = data.feats["clean"]
    columns = {"held-out": per_class_accuracy(model, x_test, y_test)}
    object_columns = {"held-out": object_accuracy(model, x_test, o_test)}
    if checks is not None:
        for name, version in (("valid", "clean"), ("valid_opus", "opus")):
            columns[name] = per_class_accuracy(model, checks.feats[version], checks.labels)
            object_columns[name] = object_accuracy(model, checks.feats[version], checks.objects)
    model.config.info = {
        "held_out_accuracy": columns["held-out"],
        "held_out_object_accuracy": object_columns["held-out"],
        "train_accuracy": per_class_accuracy(model, clean, data.labels),
        "train_pieces": len(train), "held_out_pieces": len(test),
        "corpora": [str(c) for c in args.corpora], "epochs": args.epochs,
        "per_stem": args.per_stem, "seed": args.seed,
        "augmentation": {"views": args.views, "coded_share": args.coded_share,
                         "reverb_share": args.reverb_share, "opus_kbps": args.opus_kbps,
                         "codec": codec.codec_id if codec is not None else None},
        # fixed statistics that standardise the timbre embeddings (metrics/timbre.py)
        "embedding_stats": corpus_stats(embeddings_of(model, clean)),
        "mfcc_stats": corpus_stats(data.mfcc),
    }
    if checks is not None:
        model.config.info["valid"] = {
            "corpora": [str(c) for c in args.valid], "pieces": len(valid),
            "opus_kbps": args.opus_kbps, "accuracy": columns["valid"],
            "opus_accuracy": columns["valid_opus"], "object_accuracy": object_columns["valid"],
            "opus_object_accuracy": object_columns["valid_opus"],
            "targets": {"accuracy": TARGETS["valid"], "opus_accuracy": TARGETS["valid_opus"]},
        }
    model.save(args.out)
    print_tables(columns, object_columns, model, f"opus {args.opus_kbps:g}k")
    summary = (f"held-out accuracy {columns['held-out']['overall']:.3f} on "
               f"{columns['held-out']['segments']} seconds of {len(test)} pieces "
               f"({len(train)} in training)")
    if checks is not None:
        low = under_target(columns, classes)
        summary += (f"; valid {columns['valid']['overall']:.3f}, through Opus "
                    f"{columns['valid_opus']['overall']:.3f}; "
                    + (f"under target: {', '.join(low)}" if low else "every family on target"))
    print(f"{summary}; saved to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
