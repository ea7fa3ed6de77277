"""The evaluation report: the same figures for real stems, our model and the baselines.

Each set is a folder of pieces, `<piece>/<slot>.wav` and `mix.wav` (what
stemcodec.evaluation.stem_sets writes, with a meta.json saying which instrument each slot
chose). Per stem: timbre stability, switch rate and identity accuracy, and where the
classifier has its second head (the GM family of each second) object identity and object
switch rate (stemcodec.metrics.identity); per piece: onset agreement of the drums with the others, chroma agreement of
harmonic stems and the largest leakage between two stems (stemcodec.metrics.coherence). Each
figure is the mean over pieces (a piece is one seed) with a 95 % bootstrap confidence
interval. Per set, the Fréchet distance of its stems' per-second embeddings to the first
set's (the reference), slot by slot, averaged over the slots. The mixes are scored too, as one
stream, in a second table, so a mix-only set (the mix baseline without a separator) is still
compared. `write_report` makes the asked-for sets, scores them and writes report.md,
report.json and the figures (report_plots.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from stemcodec.audio import is_audio_path, load_audio
from stemcodec.errors import AudioError, UserError
from stemcodec.evaluation.consistency import folder_objects
from stemcodec.evaluation.report_plots import plot_stability, plot_switches
from stemcodec.metrics.classifier import InstrumentClassifier, load_classifier
from stemcodec.metrics.coherence import set_coherence
from stemcodec.metrics.frechet import frechet_distance
from stemcodec.metrics.identity import (
    NO_OBJECT_HEAD,
    identity_accuracy,
    label_seconds,
    object_identity,
    object_switch_rate,
    switch_rate,
)
from stemcodec.metrics.seconds import active_seconds, split_seconds
from stemcodec.metrics.timbre import stem_embeddings, timbre_stability

if TYPE_CHECKING:
    from stemcodec.separate import Separator

Embedder = Callable[[torch.Tensor, int], torch.Tensor]  # (wav [C, S], rate) -> [N, D]
STEM_KEYS = ("timbre_stability", "switch_rate", "identity_accuracy", "object_identity",
             "object_switch_rate")
OBJECT_KEYS = ("object_identity", "object_switch_rate")  # shown where some set has them
PIECE_KEYS = ("onset_agreement", "chroma_agreement", "max_leakage")
MIX_KEYS = ("timbre_stability", "switch_rate")
# a real mix changes its loudest instrument often: for mixes, near the real ones is better
MIX_HEADERS = {"timbre_stability": "stability ↑", "switch_rate": "label switch rate (≈ real)"}
HEADERS = {"timbre_stability": "stability ↑", "switch_rate": "switch rate ↓",
           "identity_accuracy": "identity ↑", "object_identity": "object identity ↑",
           "object_switch_rate": "object switch rate ↓", "onset_agreement": "onset agr. ↑",
           "chroma_agreement": "chroma agr. ↑", "max_leakage": "max leakage ↓"}


def score_stem(wav: torch.Tensor, rate: int, model: InstrumentClassifier, embedding: str,
               known: str | None, frechet: Embedder | None = None,
               family: str | None = None) -> tuple[dict, torch.Tensor] | None:
    """(figures, per-second embeddings for the Fréchet distance: `frechet`'s, else the timbre
    embedding) of one stem or mix (`family`: the GM family of its chosen instrument, if
    known); None when it is silent."""
    seconds = label_seconds(model, wav, rate)
    if not seconds.labels:
        return None
    changes = [(i, a != b) for (i, a), (j, b) in
               zip(zip(seconds.index, seconds.labels),
                   zip(seconds.index[1:], seconds.labels[1:])) if j == i + 1]
    emb = stem_embeddings(wav, rate, embedding, model)
    return {"timbre_stability": timbre_stability(emb), "switch_rate": switch_rate(seconds),
            "identity_accuracy": identity_accuracy(seconds, known) if known else None,
            "object_identity": object_identity(seconds, family),
            "object_switch_rate": object_switch_rate(seconds),
            "switches": changes}, (emb if frechet is None else frechet(wav, rate))


def score_piece(folder: Path, model: InstrumentClassifier, embedding: str,
                frechet: Embedder | None = None) -> dict | None:
    """Figures of one piece folder (its stems, and its mix.wav as "mix"); None (after one
    line) when it has neither. Its "embeddings" (per slot, `[N, D]` of the active seconds;
    the mix's as "mix_embeddings") feed the Fréchet distance, not report.json."""
    stems, rows, embeddings, mix = {}, {}, {}, None
    chosen = folder_objects(folder)
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_audio_path(p)):
        is_mix = path.stem.lower() == "mix"
        try:
            wav, rate = load_audio(path, 24000, 1)
        except AudioError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        if not is_mix:
            stems[path.stem] = wav
        known = path.stem if path.stem in model.config.classes else None
        scored = score_stem(wav, rate, model, embedding, known, frechet,
                            None if is_mix else chosen.get(path.stem))
        if scored is None:
            print(f"skipped {path}: silent (no second above -60 dBFS)", file=sys.stderr)
        elif is_mix:
            mix = scored
        else:
            rows[path.stem], embeddings[path.stem] = scored
    if not rows and mix is None:
        print(f"skipped {folder}: no readable, non-silent stem", file=sys.stderr)
        return None
    coherence = set_coherence(stems, 24000) if len(stems) > 1 else {}
    return {"stems": rows, **{k: coherence.get(k) for k in PIECE_KEYS},
            "mix": mix[0] if mix else None, "embeddings": embeddings,
            "mix_embeddings": {"mix": mix[1]} if mix else {}}


def frechet_embedder(kind: str, embedding: str, model: InstrumentClassifier,
                     vggish: str | None = None) -> Embedder | None:
    """The per-second embedding of the Fréchet distance (`kind`: classifier, or vggish with
    the weights `vggish` or the torch hub cache's); None: the same as the stability figure's
    `embedding`."""
    if kind == "vggish":
        from stemcodec.metrics.vggish import load_vggish, vggish_embeddings
        net = load_vggish(vggish)

        def embed(wav: torch.Tensor, rate: int) -> torch.Tensor:
            segments = split_seconds(wav, rate)
            return vggish_embeddings(net, segments[active_seconds(segments)], rate)
        return embed
    if embedding == "classifier":
        return None
    return lambda wav, rate: stem_embeddings(wav, rate, "classifier", model)


def pooled_embeddings(pieces: dict[str, dict],
                      key: str = "embeddings") -> dict[str, torch.Tensor]:
    """Per slot, the per-second embeddings of every piece of a set, `[N, D]`."""
    by_slot: dict[str, list[torch.Tensor]] = {}
    for piece in pieces.values():
        for slot, emb in piece[key].items():
            by_slot.setdefault(slot, []).append(emb)
    return {slot: torch.cat(embs) for slot, embs in by_slot.items()}


def frechet_by_slot(ours: dict[str, torch.Tensor],
                    theirs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per slot, the Fréchet distance between a set's pooled embeddings and the reference's
    (slots with fewer than two seconds on either side are left out)."""
    return {slot: round(frechet_distance(theirs[slot], emb), 4) for slot, emb in ours.items()
            if slot in theirs and emb.shape[0] >= 2 and theirs[slot].shape[0] >= 2}


def mean_ci(values: Sequence[float | None], seed: int = 0,
            resamples: int = 2000) -> tuple[float, float, float] | None:
    """Mean and 95 % percentile-bootstrap interval (None when no value)."""
    x = np.array([v for v in values if v is not None], dtype=float)
    if len(x) == 0:
        return None
    if len(x) == 1:
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summarise(pieces: dict[str, dict]) -> dict:
    """Per key, mean and CI over pieces (a piece's stem figure is the mean over its stems);
    "pieces" counts those with stems, "mix" holds the figures of the mixes."""
    with_stems = [p for p in pieces.values() if p["stems"]]
    out: dict = {"pieces": len(with_stems)}
    for key in STEM_KEYS:
        per_piece = []
        for piece in with_stems:
            vals = [s[key] for s in piece["stems"].values() if s[key] is not None]
            per_piece.append(sum(vals) / len(vals) if vals else None)
        out[key] = mean_ci(per_piece)
    for key in PIECE_KEYS:
        out[key] = mean_ci([p[key] for p in with_stems])
    mixes = [p["mix"] for p in pieces.values() if p.get("mix")]
    out["mix"] = {"pieces": len(mixes),
                  **{k: mean_ci([m[k] for m in mixes]) for k in MIX_KEYS}}
    return out


def _cell(v: tuple[float, float, float] | None) -> str:
    return "–" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _frechet_cell(reference: bool, fd: float | None) -> str:
    return "(reference)" if reference else "–" if fd is None else f"{fd:.1f}"


def markdown(summaries: dict[str, dict], object_head: bool = True) -> str:
    """The stems table (sets with stems) and the mixes table (sets with mixes). The object
    columns are there where some set has object figures; without the classifier's second
    head (`object_head` False) a line under the table says why they are not."""
    shown = any(s.get(k) is not None for s in summaries.values() for k in OBJECT_KEYS)
    keys = tuple(k for k in (*STEM_KEYS, *PIECE_KEYS) if shown or k not in OBJECT_KEYS)
    lines = ["| set | pieces | " + " | ".join(HEADERS[k] for k in keys) + " | fréchet ↓ |",
             "|---|---:|" + "---:|" * (len(keys) + 1)]
    first = next(iter(summaries), None)  # the reference of both tables
    stem_sets = [(n, s) for n, s in summaries.items() if s["pieces"]]
    for name, s in stem_sets:
        cells = [_cell(s[k]) for k in keys] + [_frechet_cell(name == first, s.get("frechet"))]
        lines.append(f"| {name} | {s['pieces']} | " + " | ".join(cells) + " |")
    if not object_head:
        lines += ["", NO_OBJECT_HEAD]
    mix_sets = [(n, s["mix"]) for n, s in summaries.items() if s["mix"]["pieces"]]
    if mix_sets:
        lines += ["", "Mixes (mix.wav of each piece, scored as one stream):", "",
                  "| set | pieces | " + " | ".join(MIX_HEADERS[k] for k in MIX_KEYS)
                  + " | fréchet ↓ |", "|---|---:|" + "---:|" * (len(MIX_KEYS) + 1)]
        for name, m in mix_sets:
            cells = [_cell(m[k]) for k in MIX_KEYS] + [_frechet_cell(name == first,
                                                                     m.get("frechet"))]
            lines.append(f"| {name} | {m['pieces']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_set(text: str) -> tuple[str, Path]:
    """(name, folder) of a `--set NAME=FOLDER`; the folder must exist."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise UserError(f"--set {text}: use NAME=FOLDER, e.g. reference=eval-out/reference")
    if not Path(folder).is_dir():
        raise UserError(f"--set {text}: {folder} is not a folder (make one with "
                        "eval/stem_sets.py)")
    return name, Path(folder)


# the sets write_report makes, by keyword, and their names in the tables
SET_NAMES = {"real": "real stems", "model": "stemcodec", "baseline_mix": "mix baseline",
             "baseline_noslot": "no slot attention"}


def usable_separator(name: str, demucs_repo: str | None = None,
                     device: str = "cpu") -> Separator | None:
    """The loaded separator `name`; None when its weights are missing, after one line: the mix
    baseline is then scored at the mix level only (the run goes on)."""
    from stemcodec.separate import MissingWeightsError, load_separator
    try:
        return load_separator(name, demucs_repo, device)
    except MissingWeightsError as exc:  # other separator errors (a bad name) stop the run
        print(f"mix baseline: {exc}; its mixes are scored at the mix level only",
              file=sys.stderr)
        return None


def make_sets(out: Path, wanted: Mapping[str, str | Path], slots: str, pieces: int,
              duration: float, seed: int = 0, separator: str = "htdemucs_6s",
              demucs_repo: str | None = None, device: str = "cpu") -> dict[str, Path]:
    """The sets of `wanted` (SET_NAMES keys: a corpus for "real", checkpoints for the others),
    written under OUT/sets/; {table name: folder}."""
    if not wanted:
        return {}
    if pieces < 1 or not duration > 0:
        raise UserError("--pieces must be at least 1 and --duration positive")
    from stemcodec.evaluation.stem_sets import model_set, reference_set
    from stemcodec.slots import parse_slots
    spec = parse_slots(slots)
    real = wanted.get("real")
    if real is not None and not Path(real).is_dir():
        raise UserError(f"--real {real} is not a folder; render one with "
                        "`python -m stemcodec.render --recipe folk-band --out CORPUS`")
    for key in ("model", "baseline_mix", "baseline_noslot"):
        if key in wanted and not (Path(wanted[key]) / "config.json").is_file():
            raise UserError(f"--{key.replace('_', '-')} {wanted[key]}: no config.json there; "
                            "pass a folder written by train/train.py")
    made = {}
    for key, source in wanted.items():
        folder = out / "sets" / key.replace("_", "-")
        if key == "real":
            reference_set(Path(source), spec, pieces, duration, folder)
        else:
            split = None
            if key == "baseline_mix" and separator.lower() != "none":
                split = usable_separator(separator, demucs_repo, device)
            model_set(str(source), spec, pieces, duration, seed, folder, separator=split,
                      demucs_repo=demucs_repo, device=device)
        made[SET_NAMES[key]] = folder
    return made


def score_sets(sets: Mapping[str, Path], model: InstrumentClassifier, embedding: str,
               frechet: Embedder | None = None) -> dict[str, dict[str, dict]]:
    """{set: {piece: figures}} of every readable piece folder; a set without one is left out
    (after one line when it has no piece folders at all)."""
    scored: dict[str, dict[str, dict]] = {}
    for name, folder in sets.items():
        pieces = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not pieces:
            print(f"skipped set {name}: no piece folders in {folder}", file=sys.stderr)
            continue
        scored[name] = {}
        for piece in tqdm(pieces, desc=name, unit="piece", file=sys.stderr):
            result = score_piece(piece, model, embedding, frechet)
            if result is not None:
                scored[name][piece.name] = result
    return {k: v for k, v in scored.items() if v}


def add_frechet(scored: dict[str, dict[str, dict]], summaries: dict[str, dict]) -> None:
    """Fréchet distances to the first set (the reference): of the stems (per slot, averaged)
    and of the mixes. A kind the first set lacks gets none (after one line)."""
    first = next(iter(scored))
    for key, where, kind in (("embeddings", lambda s: s, "stems"),
                             ("mix_embeddings", lambda s: s["mix"], "mixes")):
        pooled = {name: pooled_embeddings(pieces, key) for name, pieces in scored.items()}
        pooled = {name: emb for name, emb in pooled.items() if emb}
        if not pooled:
            continue
        if first not in pooled:
            print(f"no Fréchet distance of the {kind}: the first set, {first}, has none "
                  "(put the reference first)", file=sys.stderr)
            continue
        reference = pooled[first]
        for name, emb in pooled.items():
            per_slot = frechet_by_slot(emb, reference)
            target = where(summaries[name])
            if key == "embeddings":
                target["frechet_by_slot"] = per_slot
            target["frechet"] = (round(sum(per_slot.values()) / len(per_slot), 4)
                                 if per_slot else None)


def write_report(out: Path, sets: Mapping[str, Path] | None = None, *,
                 real: Path | None = None, model: str | None = None,
                 baseline_mix: str | None = None, baseline_noslot: str | None = None,
                 slots: str = "vocals-free", pieces: int = 16, duration: float = 10.0,
                 seed: int = 0, separator: str = "htdemucs_6s", demucs_repo: str | None = None,
                 device: str = "cpu", classifier: str | None = None,
                 embedding: str = "classifier", frechet_embedding: str = "classifier",
                 vggish: str | None = None) -> str:
    """The report of the sets made from `real` (a corpus), `model`, `baseline_mix` and
    `baseline_noslot` (checkpoints: `pieces` generations of `duration` s, seeds from `seed`)
    into OUT/sets/, then of the ready `sets` ({name: folder}); the first set is the reference.
    Writes OUT/report.md, report.json, stability_by_slot.png and switches_over_time.png, and
    returns the tables (markdown)."""
    ready = dict(sets or {})
    wanted = {key: source for key, source in (("real", real), ("model", model),
                                              ("baseline_mix", baseline_mix),
                                              ("baseline_noslot", baseline_noslot))
              if source is not None}
    if not ready and not wanted:
        raise UserError("nothing to report: give --real CORPUS and/or --model CHECKPOINT "
                        "(--baseline-mix, --baseline-noslot), or --set NAME=FOLDER")
    clf = load_classifier(classifier)  # before any generation: fail fast without it
    frechet = frechet_embedder(frechet_embedding, embedding, clf, vggish)
    sets_in = {**make_sets(out, wanted, slots, pieces, duration, seed, separator, demucs_repo,
                           device), **ready}
    scored = score_sets(sets_in, clf, embedding, frechet)
    if not scored:
        raise UserError("nothing to report: no set has a readable piece")
    summaries = {name: summarise(pieces) for name, pieces in scored.items()}
    add_frechet(scored, summaries)
    for pieces_of_set in scored.values():  # tensors stay out of report.json
        for piece in pieces_of_set.values():
            piece.pop("embeddings")
            piece.pop("mix_embeddings")
    out.mkdir(parents=True, exist_ok=True)
    table = markdown(summaries, clf.has_objects)
    (out / "report.md").write_text(
        "# stemcodec evaluation\n\nMean over pieces with a 95 % bootstrap interval; Fréchet "
        f"distance over {frechet_embedding} embeddings.\n\n"
        + table + "\n![stability](stability_by_slot.png)\n\n"
        "![switches](switches_over_time.png)\n")
    (out / "report.json").write_text(json.dumps(
        {"summary": summaries, "frechet_embedding": frechet_embedding, "pieces": scored,
         "sets": {k: str(v) for k, v in sets_in.items()}}, indent=1) + "\n")
    plot_stability(scored, out / "stability_by_slot.png")
    plot_switches(scored, out / "switches_over_time.png")
    return table
