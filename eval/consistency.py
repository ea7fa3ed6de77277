"""Per-stem consistency: timbre stability, instrument switch rate and identity accuracy.

    python eval/consistency.py eval-out/reference/* --json eval-out/reference.json
    python eval/consistency.py out/song/guitar.wav some-other.flac

Each PATH is a folder of stems, `<instrument>.wav` (any audio extension; mix.* is passed
over), whose file names say which instrument each stem should be, or a single audio file,
whose instrument is not known (identity accuracy null). Every second of a stem that is not
silent is embedded and labelled by the instrument classifier (stemcodec/assets/classifier):

    timbre_stability   mean cosine of each second's timbre embedding to the stem's mean
    switch_rate        share of neighbouring active seconds whose label changes
    identity_accuracy  share of active seconds labelled as the stem's instrument
    object_identity    share of active seconds whose GM family (piano, organ, strings, brass,
                       reed, pipe, synth lead, ..., drums: the classifier's second head) is
                       that of the slot's chosen instrument, from the folder's meta.json (a
                       generation's "objects", a rendered piece's "stem_instruments")
    object_switch_rate share of neighbouring active seconds whose GM family changes

A classifier saved without the second head gives null object figures, and a line says so.

`--json F` writes {"files": {path: {...}}, "summary": {...}}. A bad input (no stems in a
folder, an unreadable or silent file) gets one line and the run goes on.

The scoring is stemcodec/evaluation/consistency.py; this script is its command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from stemcodec.errors import cli
from stemcodec.evaluation.consistency import print_table, score_paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="folders of <instrument>.wav stems, or single audio files")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--classifier", default=None,
                   help="classifier folder (default: the bundled one)")
    p.add_argument("--embedding", choices=("classifier", "mfcc"), default="classifier",
                   help="timbre embedding of the stability figure")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    summary = score_paths(args.paths, args.classifier, args.embedding, args.json)["summary"]
    print_table(summary)
    print(f"scored {summary['files']} stems, skipped {summary['skipped']}"
          + (f"; figures in {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
