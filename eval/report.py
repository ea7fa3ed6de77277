"""The evaluation report: the same figures for real stems, our model and the baselines.

    python eval/report.py --real CORPUS_DIR --model runs/mini --baseline-mix runs/mix \
        --baseline-noslot runs/noslot --out report/
    python eval/report.py --set reference=eval-out/reference --set mini=eval-out/mini \
        --set "no slot attention=eval-out/indep" --set "mix baseline=eval-out/mix" --out docs/report

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

The mixes (mix.wav of each piece) are scored too, in a second table: timbre stability, switch
rate and Fréchet distance of the mix as one stream. That table compares every set, the mix
baseline included when no separator is at hand (--separator none, or its weights missing):
then its pieces are mixes only and it has no row in the stems table.

Writes OUT/report.md (the tables), OUT/report.json (every figure), OUT/stability_by_slot.png
(per-slot stability distributions) and OUT/switches_over_time.png (share of stems changing
instrument label at each second: for long generations, does identity drift?).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
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
from stemcodec.metrics.seconds import active_seconds, split_seconds
from stemcodec.metrics.timbre import stem_embeddings, timbre_stability

Embedder = Callable[[torch.Tensor, int], torch.Tensor]  # (wav [C, S], rate) -> [N, D]
STEM_KEYS = ("timbre_stability", "switch_rate", "identity_accuracy")
PIECE_KEYS = ("onset_agreement", "chroma_agreement", "max_leakage")
MIX_KEYS = ("timbre_stability", "switch_rate")
# a real mix changes its loudest instrument often: for mixes, near the real ones is better
MIX_HEADERS = {"timbre_stability": "stability ↑", "switch_rate": "label switch rate (≈ real)"}
HEADERS = {"timbre_stability": "stability ↑", "switch_rate": "switch rate ↓",
           "identity_accuracy": "identity ↑", "onset_agreement": "onset agr. ↑",
           "chroma_agreement": "chroma agr. ↑", "max_leakage": "max leakage ↓"}


def score_stem(wav: torch.Tensor, rate: int, model, embedding: str, known: str | None,
               frechet: Embedder | None = None) -> tuple[dict, torch.Tensor] | None:
    """(figures, per-second embeddings for the Fréchet distance: `frechet`'s, else the timbre
    embedding) of one stem or mix; None when it is silent."""
    seconds = label_seconds(model, wav, rate)
    if not seconds.labels:
        return None
    changes = [(i, a != b) for (i, a), (j, b) in
               zip(zip(seconds.index, seconds.labels),
                   zip(seconds.index[1:], seconds.labels[1:])) if j == i + 1]
    emb = stem_embeddings(wav, rate, embedding, model)
    return {"timbre_stability": timbre_stability(emb), "switch_rate": switch_rate(seconds),
            "identity_accuracy": identity_accuracy(seconds, known) if known else None,
            "switches": changes}, (emb if frechet is None else frechet(wav, rate))


def score_piece(folder: Path, model, embedding: str,
                frechet: Embedder | None = None) -> dict | None:
    """Figures of one piece folder (its stems, and its mix.wav as "mix"); None (after one
    line) when it has neither. Its "embeddings" (per slot, `[N, D]` of the active seconds;
    the mix's as "mix_embeddings") feed the Fréchet distance, not report.json."""
    stems, rows, embeddings, mix = {}, {}, {}, None
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
        scored = score_stem(wav, rate, model, embedding, known, frechet)
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


def frechet_embedder(args: argparse.Namespace, model) -> Embedder | None:
    """The per-second embedding of the Fréchet distance; None: the timbre embedding's."""
    if args.frechet_embedding == "vggish":
        from stemcodec.metrics.vggish import load_vggish, vggish_embeddings
        net = load_vggish(args.vggish)

        def vggish(wav: torch.Tensor, rate: int) -> torch.Tensor:
            segments = split_seconds(wav, rate)
            return vggish_embeddings(net, segments[active_seconds(segments)], rate)
        return vggish
    if args.embedding == "classifier":
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


def _cell(v) -> str:
    return "–" if v is None else f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"


def _frechet_cell(reference: bool, fd: float | None) -> str:
    return "(reference)" if reference else "–" if fd is None else f"{fd:.1f}"


def markdown(summaries: dict[str, dict]) -> str:
    """The stems table (sets with stems) and the mixes table (sets with mixes)."""
    keys = (*STEM_KEYS, *PIECE_KEYS)
    lines = ["| set | pieces | " + " | ".join(HEADERS[k] for k in keys) + " | fréchet ↓ |",
             "|---|---:|" + "---:|" * (len(keys) + 1)]
    first = next(iter(summaries), None)  # the reference of both tables
    stem_sets = [(n, s) for n, s in summaries.items() if s["pieces"]]
    for name, s in stem_sets:
        cells = [_cell(s[k]) for k in keys] + [_frechet_cell(name == first, s.get("frechet"))]
        lines.append(f"| {name} | {s['pieces']} | " + " | ".join(cells) + " |")
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


def _column(piece: dict, column: str) -> dict | None:
    """A piece's figures for a plot column: a slot's stem, or "mix"."""
    return piece.get("mix") if column == "mix" else piece["stems"].get(column)


def plot_stability(sets: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    slots = sorted({s for pieces in sets.values() for p in pieces.values() for s in p["stems"]})
    columns = slots + ["mix"]  # the mixes last: the only column a mix-only set fills
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.8 * len(columns) * max(1, len(sets)))), 4))
    width = 0.8 / max(1, len(sets))
    for i, (name, pieces) in enumerate(sets.items()):
        data = [[f["timbre_stability"] for p in pieces.values()
                 if (f := _column(p, c)) is not None and f["timbre_stability"] is not None]
                for c in columns]
        pos = [j + (i - (len(sets) - 1) / 2) * width for j in range(len(columns))]
        keep = [(d, x) for d, x in zip(data, pos) if d]
        if keep:
            box = ax.boxplot([d for d, _ in keep], positions=[x for _, x in keep],
                             widths=width * 0.9, patch_artist=True, manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(f"C{i}")
        ax.plot([], [], color=f"C{i}", lw=6, label=name)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("timbre stability")
    ax.legend(fontsize=8)
    ax.set_title("Timbre stability per slot (higher: the stem keeps its instrument)")
    save(fig, path)


def plot_switches(sets: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    curves = [(i, name, pieces, any(p["stems"] for p in pieces.values()))
              for i, (name, pieces) in enumerate(sets.items())]
    if len(curves) > 1 and curves[0][3] and not all(c[3] for c in curves):
        # mix-only sets (dashed) are drawn beside the reference's mixes
        curves.insert(1, (0, curves[0][1], curves[0][2], False))
    for i, name, pieces, has_stems in curves:
        counts: dict[int, list[int]] = {}
        for piece in pieces.values():
            tracks = piece["stems"].values() if has_stems else [piece["mix"]]
            for stem in tracks:
                for second, changed in (stem or {}).get("switches", []):
                    counts.setdefault(second, []).append(int(changed))
        if counts:
            xs = sorted(counts)
            ax.plot([x + 1 for x in xs], [np.mean(counts[x]) for x in xs], color=f"C{i}",
                    label=name if has_stems else f"{name} (mixes)", marker=".",
                    linestyle="-" if has_stems else "--")
    ax.set_xlabel("second")
    ax.set_ylabel("share of stems switching label")
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


SET_NAMES = {"real": "real stems", "model": "stemcodec", "baseline_mix": "mix baseline",
             "baseline_noslot": "no slot attention"}


def _stem_sets():
    """eval/stem_sets.py, beside this script (eval/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("eval_stem_sets",
                                                  Path(__file__).with_name("stem_sets.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def usable_separator(args: argparse.Namespace):
    """The loaded --separator; None when its weights are missing, after one line: the mix
    baseline is then scored at the mix level only (the run goes on)."""
    from stemcodec.separate import MissingWeightsError, load_separator
    try:
        return load_separator(args.separator, args.demucs_repo, args.device)
    except MissingWeightsError as exc:  # other separator errors (a bad name) stop the run
        print(f"mix baseline: {exc}; its mixes are scored at the mix level only",
              file=sys.stderr)
        return None


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
            separator = None
            if key == "baseline_mix" and args.separator.lower() != "none":
                separator = usable_separator(args)
            sets.model_set(source, slots, args.pieces, args.duration, args.seed, folder,
                           separator=separator, demucs_repo=args.demucs_repo,
                           device=args.device)
        made[SET_NAMES[key]] = folder
    return made


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


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ready = dict(parse_set(s) for s in args.set)
    if not ready and not any(getattr(args, key) is not None for key in SET_NAMES):
        raise UserError("nothing to report: give --real CORPUS and/or --model CHECKPOINT "
                        "(--baseline-mix, --baseline-noslot), or --set NAME=FOLDER")
    model = load_classifier(args.classifier)  # before any generation: fail fast without it
    frechet = frechet_embedder(args, model)
    sets_in = {**make_sets(args), **ready}
    scored: dict[str, dict[str, dict]] = {}
    for name, folder in sets_in.items():
        pieces = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not pieces:
            print(f"skipped set {name}: no piece folders in {folder}", file=sys.stderr)
            continue
        scored[name] = {}
        for piece in tqdm(pieces, desc=name, unit="piece", file=sys.stderr):
            result = score_piece(piece, model, args.embedding, frechet)
            if result is not None:
                scored[name][piece.name] = result
    scored = {k: v for k, v in scored.items() if v}
    if not scored:
        raise UserError("nothing to report: no set has a readable piece")
    summaries = {name: summarise(pieces) for name, pieces in scored.items()}
    add_frechet(scored, summaries)
    for pieces in scored.values():  # tensors stay out of report.json
        for piece in pieces.values():
            piece.pop("embeddings")
            piece.pop("mix_embeddings")
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(summaries)
    (args.out / "report.md").write_text(
        "# stemcodec evaluation\n\nMean over pieces with a 95 % bootstrap interval; Fréchet "
        f"distance over {args.frechet_embedding} embeddings.\n\n"
        + table + "\n![stability](stability_by_slot.png)\n\n"
        "![switches](switches_over_time.png)\n")
    (args.out / "report.json").write_text(json.dumps(
        {"summary": summaries, "frechet_embedding": args.frechet_embedding, "pieces": scored, "sets": {k: str(v) for k, v in
                                                           sets_in.items()}}, indent=1) + "\n")
    plot_stability(scored, args.out / "stability_by_slot.png")
    plot_switches(scored, args.out / "switches_over_time.png")
    print(table, end="")
    print(f"wrote {args.out}/report.md, report.json, stability_by_slot.png, "
          "switches_over_time.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
