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

Every `<piece>/<slot>.wav` of a rendered corpus gives up to `--per-stem` active 1-s segments
labelled with the slot. Pieces are split by their piece key (stemcodec.corpus.layout), as the
trainers split them: every variant, part and recipe of one tune lands on the same side, so
no held-out tune was heard in training. Prints the held-out accuracy per class and
stores it, with the class list, in the checkpoint's config.json.

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

from stemcodec.errors import UserError, cli
from stemcodec.evaluation.classifier_training import (
    augment,
    embeddings_of,
    per_class_accuracy,
    segments_of,
    training_pieces,
    write_lines,
)
from stemcodec.metrics.classifier import ClassifierConfig, InstrumentClassifier
from stemcodec.metrics.timbre import corpus_stats

OUT = Path(__file__).resolve().parents[1] / "stemcodec" / "assets" / "classifier"


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
    classes, train, test = training_pieces(args.corpora, args.held_out)
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
