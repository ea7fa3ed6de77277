"""Sets of stems to score: real stems of a rendered corpus (the reference) or a model's
generations, one folder per piece as `eval/consistency.py` reads them.

    python eval/stem_sets.py --corpus data/corpus/folk-band --slots vocals-free --pieces 16 --out eval-out/reference
    python eval/stem_sets.py --checkpoint runs/mini --slots vocals-free --pieces 16 --out eval-out/mini
    python eval/stem_sets.py --checkpoint runs/baseline-mix --slots vocals-free --separator htdemucs_6s --out eval-out/mix

Writes OUT/<piece>/<slot>.wav, OUT/<piece>/mix.wav and OUT/set.json (what made the set). A model
generates `--pieces` pieces of `--duration` seconds in batches through StemGenerator, the API
that `stemcodec.generate` runs: piece `seed<s>` (seeds `--seed`, `--seed`+1, ...) is what
`python -m stemcodec.generate --seed s` makes, with the same checks, at the model's own levels
(the CLI balances them). A mix-mode model (one stream) generates mixes that `--separator` splits
into stems: the MusicGen-style baseline. Without `--separator` its pieces hold mix.wav alone,
which eval/report.py scores at the mix level.

The sets are made by stemcodec/evaluation/stem_sets.py; this script is its command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from stemcodec.errors import cli
from stemcodec.evaluation.stem_sets import describe_set, make_set


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="a rendered corpus: real stems")
    source.add_argument("--checkpoint", help="a model folder: its generations")
    p.add_argument("--slots", default="vocals-free")
    p.add_argument("--pieces", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=250)
    p.add_argument("--separator", default=None,
                   help="splits a mix-mode model's mixes into stems (without: mixes only)")
    p.add_argument("--demucs-repo", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True)
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    written = make_set(args.out, args.slots, corpus=args.corpus, checkpoint=args.checkpoint,
                       pieces=args.pieces, duration=args.duration, seed=args.seed,
                       batch=args.batch, temperature=args.temperature, top_k=args.top_k,
                       separator=args.separator, demucs_repo=args.demucs_repo,
                       device=args.device)
    print(f"wrote {len(written)} {describe_set(written, args.slots)} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
