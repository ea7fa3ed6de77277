"""The evaluation report: the same figures for real stems, our model and the baselines.

    python eval/report.py --real CORPUS_DIR --model runs/mini --baseline-mix runs/mix \
        --baseline-noslot runs/noslot --out report/
    python eval/report.py --set reference=eval-out/reference --set mini=eval-out/mini \
        --set "no slot attention=eval-out/indep" --set "mix baseline=eval-out/mix" --out docs/report

With --real / --model / --baseline-mix / --baseline-noslot the sets are made first (as
eval/stem_sets.py makes them, into OUT/sets/<name>/: the first --pieces pieces of the corpus
that have every slot, and --pieces generations of --duration seconds per model, seeds --seed
on; the mix baseline's mixes split into stems by --separator); --set adds ready folders.

Each set is a folder of pieces, `<piece>/<slot>.wav` (what `eval/stem_sets.py` writes, with
a meta.json naming each slot's chosen instrument). Per stem: timbre stability, switch rate and
identity accuracy, and object identity and object switch rate where the classifier has its
GM-family head (eval/consistency.py; columns left out, with a line, where it has none); per
piece: onset agreement of the drums with the others, chroma agreement of harmonic stems and
the largest leakage between two stems (stemcodec.metrics.coherence). Each figure is the mean over
pieces (a piece is one seed) with a 95 % bootstrap confidence interval. Per set, the Fréchet
distance of its stems' per-second classifier embeddings to the first set's (the reference),
slot by slot, averaged over the slots: how far the set sounds from real stems.

The mixes (mix.wav of each piece) are scored too, in a second table: timbre stability, switch
rate and Fréchet distance of the mix as one stream. That table compares every set, the mix
baseline included when no separator is at hand (--separator none, or its weights missing):
then its pieces are mixes only and it has no row in the stems table.

Writes OUT/report.md (the tables), OUT/report.json (every figure), OUT/stability_by_slot.png
(per-slot stability distributions) and OUT/switches_over_time.png (share of stems changing
instrument label at each second: for long generations, does identity drift?).

The report is made by stemcodec/evaluation/report.py (its figures: report_plots.py);
this script is its command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from stemcodec.errors import cli
from stemcodec.evaluation.report import parse_set, write_report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER",
                   help="a ready set of piece folders; repeat")
    p.add_argument("--real", type=Path, default=None, metavar="CORPUS",
                   help="a rendered corpus: its real stems are the reference set")
    p.add_argument("--model", default=None, metavar="CHECKPOINT", help="a stemcodec model")
    p.add_argument("--baseline-mix", default=None, metavar="CHECKPOINT",
                   help="a mode: mix model; its mixes are separated into stems")
    p.add_argument("--baseline-noslot", default=None, metavar="CHECKPOINT",
                   help="a model trained with model.slot_attention=false")
    p.add_argument("--slots", default="vocals-free", help="the slots every set is scored on")
    p.add_argument("--pieces", type=int, default=16, help="pieces (seeds) per set")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per piece")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--separator", default="htdemucs_6s",
                   help="splits the mix baseline into stems; none: score its mixes only")
    p.add_argument("--demucs-repo", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--classifier", default=None, help="default: the bundled one")
    p.add_argument("--embedding", choices=("classifier", "mfcc"), default="classifier",
                   help="timbre embedding of the stability figure")
    p.add_argument("--frechet-embedding", choices=("classifier", "vggish"),
                   default="classifier", help="embedding of the Fréchet distance (vggish: "
                   "FAD's, with the user's weights)")
    p.add_argument("--vggish", default=None, metavar="FILE",
                   help="VGGish weights (vggish-10086976.pth); default: the torch hub cache")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    table = write_report(
        args.out, dict(parse_set(s) for s in args.set), real=args.real, model=args.model,
        baseline_mix=args.baseline_mix, baseline_noslot=args.baseline_noslot,
        slots=args.slots, pieces=args.pieces, duration=args.duration, seed=args.seed,
        separator=args.separator, demucs_repo=args.demucs_repo, device=args.device,
        classifier=args.classifier, embedding=args.embedding,
        frechet_embedding=args.frechet_embedding, vggish=args.vggish)
    print(table, end="")
    print(f"wrote {args.out}/report.md, report.json, stability_by_slot.png, "
          "switches_over_time.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
