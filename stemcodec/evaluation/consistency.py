"""Per-stem consistency of any stems: timbre stability, instrument switch rate and identity
accuracy, and at the object level (the GM family of each second: the classifier's second
head) object identity and object switch rate; per file and summarised over files and per
instrument.

A path is a folder of stems, `<instrument>.wav` (any audio extension; mix.* is passed over),
whose file names say which instrument each stem should be, or a single audio file, whose
instrument is not known (identity accuracy null). A folder's meta.json, where there is one,
says which instrument each slot chose (a generation's `objects`, a rendered piece's
`stem_instruments`): object identity compares each second's GM family with that one's (null
where none is known). A classifier without the second head gives null object figures and one
line saying so. A bad input (no stems in a folder, an unreadable or silent file) gets one
line and the scoring goes on.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from stemcodec.audio import is_audio_path, load_audio
from stemcodec.errors import AudioError, UserError
from stemcodec.metrics.classifier import InstrumentClassifier, load_classifier
from stemcodec.metrics.identity import (
    NO_OBJECT_HEAD,
    identity_accuracy,
    label_seconds,
    object_identity,
    object_switch_rate,
    slot_object_families,
    switch_rate,
)
from stemcodec.metrics.timbre import stem_embeddings, timbre_stability
from stemcodec.slots import DEFAULT_VOCABULARY

KEYS = ("timbre_stability", "switch_rate", "identity_accuracy", "object_identity",
        "object_switch_rate")


def folder_objects(folder: Path) -> dict[str, str]:
    """{slot: GM family of its chosen instrument} from `folder`/meta.json ({} without one, or
    with one that cannot be read)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return {}
    return slot_object_families(meta)


def collect(paths: Sequence[Path]
            ) -> tuple[list[tuple[Path, str | None, str | None]], list[str]]:
    """(file, instrument or None, GM family of its chosen instrument or None) to score, and
    one line per path that gives nothing."""
    files, bad = [], []
    for path in paths:
        if path.is_dir():
            stems = sorted(p for p in path.iterdir()
                           if p.is_file() and is_audio_path(p) and p.stem.lower() != "mix")
            if not stems:
                bad.append(f"skipped {path}: no stems (<instrument>.wav) in the folder")
            chosen = folder_objects(path)
            for stem in stems:
                name = stem.stem.lower()
                files.append((stem, name if name in DEFAULT_VOCABULARY else None,
                              chosen.get(stem.stem, chosen.get(name))))
        elif path.is_file():
            files.append((path, None, None))
        else:
            bad.append(f"skipped {path}: no such file or folder")
    return files, bad


def score_file(path: Path, instrument: str | None, model: InstrumentClassifier,
               embedding: str, family: str | None = None) -> dict:
    """The figures of one stem (`family`: the GM family of its chosen instrument, if known);
    AudioError when it cannot be read or is silent."""
    wav, rate = load_audio(path, channels=1)
    seconds = label_seconds(model, wav, rate)
    if not seconds.labels:
        raise AudioError("silent (no second above -60 dBFS)")
    known = instrument if instrument in model.config.classes else None
    label = max(set(seconds.labels), key=seconds.labels.count)
    return {
        "timbre_stability": timbre_stability(stem_embeddings(wav, rate, embedding, model)),
        "switch_rate": switch_rate(seconds),
        "identity_accuracy": identity_accuracy(seconds, known) if known else None,
        "object_identity": object_identity(seconds, family),
        "object_switch_rate": object_switch_rate(seconds),
        "instrument": instrument,
        "label": label,
        "object_family": family,
        "object_label": (max(set(seconds.objects), key=seconds.objects.count)
                         if seconds.objects else None),
        "seconds": len(seconds.labels),
    }


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return round(sum(kept) / len(kept), 4) if kept else None


def summarise(results: dict[str, dict], skipped: int) -> dict:
    """Means over all files and per instrument (null where no file has the figure)."""
    rows = list(results.values())
    summary = {"files": len(rows), "skipped": skipped,
               **{k: _mean([r[k] for r in rows]) for k in KEYS}, "instruments": {}}
    for name in sorted({r["instrument"] for r in rows if r["instrument"]}):
        mine = [r for r in rows if r["instrument"] == name]
        summary["instruments"][name] = {"files": len(mine),
                                        **{k: _mean([r[k] for r in mine]) for k in KEYS}}
    return summary


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def print_table(summary: dict) -> None:
    """The summary per instrument and over all files, one row each; the object columns where
    the classifier has its GM-family head, else one line saying they are n/a."""
    objects = summary.get("object_head", True)
    print(f"{'instrument':12s} {'files':>5s}  stability  switch  identity"
          + ("  obj. identity  obj. switch" if objects else ""))
    rows = [*summary["instruments"].items(), ("all", summary)]
    for name, row in rows:
        print(f"{name:12s} {row['files']:5d}  {_fmt(row['timbre_stability'])}     "
              f"{_fmt(row['switch_rate'])}  {_fmt(row['identity_accuracy'])}"
              + (f"         {_fmt(row['object_identity'])}       "
                 f"{_fmt(row['object_switch_rate'])}" if objects else ""))
    if not objects:
        print(NO_OBJECT_HEAD)


def score_paths(paths: Sequence[Path], classifier: str | None = None,
                embedding: str = "classifier", json_path: Path | None = None) -> dict:
    """{"files": {path: figures}, "summary": {...}} of every stem under `paths`, also written
    to `json_path` if given; UserError when no stem could be scored."""
    model = load_classifier(classifier)
    files, bad = collect(paths)
    for line in bad:
        print(line, file=sys.stderr)
    results: dict[str, dict] = {}
    skipped = len(bad)
    for path, instrument, family in tqdm(files, desc="consistency", unit="file",
                                         file=sys.stderr):
        try:
            results[str(path)] = score_file(path, instrument, model, embedding, family)
        except AudioError as exc:
            tqdm.write(f"skipped {path}: {exc}", file=sys.stderr)
            skipped += 1
    if not results:
        raise UserError(f"nothing to score: none of the {len(paths)} input path(s) "
                        "holds a readable, non-silent stem")
    scored = {"files": results, "summary": {**summarise(results, skipped),
                                            "embedding": embedding,
                                            "object_head": model.has_objects}}
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(scored, indent=1) + "\n")
    return scored
