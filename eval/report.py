"""The evaluation report: the same figures for real stems, our model and the baselines.

    python eval/report.py --real CORPUS_DIR --model runs/mini --baseline-mix runs/mix \
        --baseline-noslot runs/noslot --out report/
    python eval/report.py --set reference=eval-out/reference --set mini=eval-out/mini \
        --set "no slot attention=eval-out/indep" --set "mix + separation=eval-out/mix" --out docs/report

With --real / --model / --baseline-mix / --baseline-noslot the sets are made first (as
eval/stem_sets.py makes them, into OUT/sets/<name>/: the first --pieces pieces of the corpus
that have every slot, and --pieces generations of --duration seconds per model, seeds --seed
on; the mix baseline's mixes split into stems by --separator); --set adds ready folders.

Each set is a folder of pieces, `<piece>/<slot>.wav` (what `eval/stem_sets.py` writes). Per
stem: timbre stability, switch rate and identity accuracy (eval/consistency.py); per piece:
onset agreement of the drums with the others, chroma agreement of harmonic stems and the
largest leakage between two stems (stemcodec.metrics.coherence). Each figure is the mean over
pieces (a piece is one seed) with a 95 % bootstrap confidence interval. Per set, the Fréchet
distance of its stems' per-second classifier embeddings to the first set's (the reference),
slot by slot, averaged over the slots: how far the set sounds from real stems.

Writes OUT/report.md (the table), OUT/report.json (every figure), OUT/stability_by_slot.png
(per-slot stability distributions) and OUT/switches_over_time.png (share of stems changing
instrument label at each second: for long generations, does identity drift?).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stemcodec.audio import is_audio_path, load_audio
from stemcodec.errors import AudioError, UserError, cli
from stemcodec.metrics.classifier import load_classifier
from stemcodec.metrics.coherence import set_coherence
from stemcodec.metrics.frechet import frechet_distance
from stemcodec.metrics.identity import identity_accuracy, label_seconds, switch_rate
from stemcodec.metrics.timbre import stem_embeddings, timbre_stability

STEM_KEYS = ("timbre_stability", "switch_rate", "identity_accuracy")
PIECE_KEYS = ("onset_agreement", "chroma_agreement", "max_leakage")
HEADERS = {"timbre_stability": "stability ↑", "switch_rate": "switch rate ↓",
           "identity_accuracy": "identity ↑", "onset_agreement": "onset agr. ↑",
           "chroma_agreement": "chroma agr. ↑", "max_leakage": "max leakage ↓"}


def score_piece(folder: Path, model, embedding: str) -> dict | None:
    """Figures of one piece folder; None (after one line) when it has no readable stem. Its
    "embeddings" (per slot, `[N, D]` of the active seconds) feed the Fréchet distance and are
    not written to report.json."""
    stems, rows, embeddings = {}, {}, {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and is_audio_path(p)
                       and p.stem.lower() != "mix"):
        try:
            wav, rate = load_audio(path, 24000, 1)
        except AudioError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        stems[path.stem] = wav
        seconds = label_seconds(model, wav, rate)
        if not seconds.labels:
            print(f"skipped {path}: silent (no second above -60 dBFS)", file=sys.stderr)
            continue
        known = path.stem if path.stem in model.config.classes else None
        changes = [(i, a != b) for (i, a), (j, b) in
                   zip(zip(seconds.index, seconds.labels),
                       zip(seconds.index[1:], seconds.labels[1:])) if j == i + 1]
        embeddings[path.stem] = stem_embeddings(wav, rate, embedding, model)
        rows[path.stem] = {
            "timbre_stability": timbre_stability(embeddings[path.stem]),
            "switch_rate": switch_rate(seconds),
            "identity_accuracy": identity_accuracy(seconds, known) if known else None,
            "switches": changes}
    if not rows:
        print(f"skipped {folder}: no readable, non-silent stem", file=sys.stderr)
        return None
    coherence = set_coherence(stems, 24000) if len(stems) > 1 else {}
    return {"stems": rows, **{k: coherence.get(k) for k in PIECE_KEYS}, "embeddings": embeddings}


def pooled_embeddings(pieces: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Per slot, the per-second embeddings of every piece of a set, `[N, D]`."""
    by_slot: dict[str, list[torch.Tensor]] = {}
    for piece in pieces.values():
        for slot, emb in piece["embeddings"].items():
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
    """Per key, mean and CI over pieces (a piece's stem figure is the mean over its stems)."""
    out = {"pieces": len(pieces)}
    for key in STEM_KEYS:
        per_piece = []
        for piece in pieces.values():
            vals = [s[key] for s in piece["stems"].values() if s[key] is not None]
            per_piece.append(sum(vals) / len(vals) if vals else None)
        out[key] = mean_ci(per_piece)
    for key in PIECE_KEYS:
        out[key] = mean_ci([p[key] for p in pieces.values()])
    return out


def markdown(summaries: dict[str, dict]) -> str:
    keys = (*STEM_KEYS, *PIECE_KEYS)
    lines = ["| set | pieces | " + " | ".join(HEADERS[k] for k in keys) + " | fréchet ↓ |",
             "|---|---:|" + "---:|" * (len(keys) + 1)]
    for i, (name, s) in enumerate(summaries.items()):
        cells = []
        for k in keys:
            v = s[k]
            cells.append("–" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]")
        fd = s.get("frechet")
        cells.append("(reference)" if i == 0 else "–" if fd is None else f"{fd:.1f}")
        lines.append(f"| {name} | {s['pieces']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_stability(sets: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    slots = sorted({s for pieces in sets.values() for p in pieces.values() for s in p["stems"]})
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(slots) * max(1, len(sets)) / 2), 4))
    width = 0.8 / max(1, len(sets))
    for i, (name, pieces) in enumerate(sets.items()):
        data = [[p["stems"][s]["timbre_stability"] for p in pieces.values()
                 if s in p["stems"] and p["stems"][s]["timbre_stability"] is not None]
                for s in slots]
        pos = [j + (i - (len(sets) - 1) / 2) * width for j in range(len(slots))]
        keep = [(d, x) for d, x in zip(data, pos) if d]
        if keep:
            box = ax.boxplot([d for d, _ in keep], positions=[x for _, x in keep],
                             widths=width * 0.9, patch_artist=True, manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(f"C{i}")
        ax.plot([], [], color=f"C{i}", lw=6, label=name)
    ax.set_xticks(range(len(slots)), slots)
    ax.set_ylabel("timbre stability")
    ax.legend(fontsize=8)
    ax.set_title("Timbre stability per slot (higher: the stem keeps its instrument)")
    save(fig, path)


def plot_switches(sets: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (name, pieces) in enumerate(sets.items()):
        counts: dict[int, list[int]] = {}
        for piece in pieces.values():
            for stem in piece["stems"].values():
                for second, changed in stem["switches"]:
                    counts.setdefault(second, []).append(int(changed))
        if counts:
            xs = sorted(counts)
            ax.plot([x + 1 for x in xs], [np.mean(counts[x]) for x in xs], color=f"C{i}",
                    label=name, marker=".")
    ax.set_xlabel("second")
    ax.set_ylabel("share of stems switching")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Instrument label changes over time")
    save(fig, path)


def save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def parse_set(text: str) -> tuple[str, Path]:
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder:
        raise UserError(f"--set {text}: use NAME=FOLDER, e.g. reference=eval-out/reference")
    if not Path(folder).is_dir():
        raise UserError(f"--set {text}: {folder} is not a folder (make one with "
                        "eval/stem_sets.py)")
    return name, Path(folder)


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
    p.add_argument("--separator", default="htdemucs_6s", help="splits the mix baseline")
    p.add_argument("--demucs-repo", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--classifier", default=None, help="default: the bundled one")
    p.add_argument("--embedding", choices=("classifier", "mfcc"), default="classifier")
    return p


SET_NAMES = {"real": "real stems", "model": "stemcodec", "baseline_mix": "mix + separation",
             "baseline_noslot": "no slot attention"}


def _stem_sets():
    """eval/stem_sets.py, beside this script (eval/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("eval_stem_sets",
                                                  Path(__file__).with_name("stem_sets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_sets(args: argparse.Namespace) -> dict[str, Path]:
    """The sets that --real / --model / --baseline-* ask for, written under OUT/sets/."""
    wanted = {key: getattr(args, key) for key in SET_NAMES if getattr(args, key) is not None}
    if not wanted:
        return {}
    if args.pieces < 1 or not args.duration > 0:
        raise UserError("--pieces must be at least 1 and --duration positive")
    from stemcodec.slots import parse_slots
    sets, slots = _stem_sets(), parse_slots(args.slots)
    if args.real is not None and not args.real.is_dir():
        raise UserError(f"--real {args.real} is not a folder; render one with "
                        "`python -m stemcodec.render --recipe folk-band --out CORPUS`")
    for key in ("model", "baseline_mix", "baseline_noslot"):
        if key in wanted and not (Path(wanted[key]) / "config.json").is_file():
            raise UserError(f"--{key.replace('_', '-')} {wanted[key]}: no config.json there; "
                            "pass a folder written by train/train.py")
    made = {}
    for key, source in wanted.items():
        folder = args.out / "sets" / key.replace("_", "-")
        if key == "real":
            sets.reference_set(source, slots, args.pieces, args.duration, folder)
        else:
            sets.model_set(source, slots, args.pieces, args.duration, args.seed, folder,
                           separator=args.separator if key == "baseline_mix" else None,
                           demucs_repo=args.demucs_repo, device=args.device)
        made[SET_NAMES[key]] = folder
    return made


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ready = dict(parse_set(s) for s in args.set)
    if not ready and not any(getattr(args, key) is not None for key in SET_NAMES):
        raise UserError("nothing to report: give --real CORPUS and/or --model CHECKPOINT "
                        "(--baseline-mix, --baseline-noslot), or --set NAME=FOLDER")
    model = load_classifier(args.classifier)  # before any generation: fail fast without it
    sets_in = {**make_sets(args), **ready}
    scored: dict[str, dict[str, dict]] = {}
    for name, folder in sets_in.items():
        pieces = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not pieces:
            print(f"skipped set {name}: no piece folders in {folder}", file=sys.stderr)
            continue
        scored[name] = {}
        for piece in tqdm(pieces, desc=name, unit="piece", file=sys.stderr):
            result = score_piece(piece, model, args.embedding)
            if result is not None:
                scored[name][piece.name] = result
    scored = {k: v for k, v in scored.items() if v}
    if not scored:
        raise UserError("nothing to report: no set has a readable piece")
    summaries = {name: summarise(pieces) for name, pieces in scored.items()}
    reference = pooled_embeddings(next(iter(scored.values())))
    for name, pieces in scored.items():
        per_slot = frechet_by_slot(pooled_embeddings(pieces), reference)
        summaries[name]["frechet_by_slot"] = per_slot
        summaries[name]["frechet"] = (round(sum(per_slot.values()) / len(per_slot), 4)
                                      if per_slot else None)
    for pieces in scored.values():  # tensors stay out of report.json
        for piece in pieces.values():
            piece.pop("embeddings")
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(summaries)
    (args.out / "report.md").write_text(
        "# stemcodec evaluation\n\nMean over pieces with a 95 % bootstrap interval.\n\n"
        + table + "\n![stability](stability_by_slot.png)\n\n"
        "![switches](switches_over_time.png)\n")
    (args.out / "report.json").write_text(json.dumps(
        {"summary": summaries, "pieces": scored, "sets": {k: str(v) for k, v in
                                                           sets_in.items()}}, indent=1) + "\n")
    plot_stability(scored, args.out / "stability_by_slot.png")
    plot_switches(scored, args.out / "switches_over_time.png")
    print(table, end="")
    print(f"wrote {args.out}/report.md, report.json, stability_by_slot.png, "
          "switches_over_time.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
