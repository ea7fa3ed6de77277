"""`python -m stemcodec.render`: scores -> a multitrack corpus of exact stems (FluidSynth).

    python -m stemcodec.render INPUT... --out CORPUS [--recipe NAME] [--variants 3] [--jobs 2]
    python -m stemcodec.render --recipe folk-band --limit 40 --out CORPUS
    python -m stemcodec.render --list-recipes

Each piece is written as CORPUS/<piece-id>/<slot>.wav (mono float32), mix.wav (the sum of
the stems: one gain for the whole piece keeps it under -1 dBFS) and meta.json, first into a
hidden temporary folder that is renamed into place when complete.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from ..audio import save_audio
from ..errors import UserError, cli
from .recipes import (
    RECIPES,
    Arrangement,
    Note,
    ScoreError,
    Source,
    arrange,
    load_tune,
    recipe_sources,
)

logger = logging.getLogger(__name__)

SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/soundfonts/default.sf2")

# GM programs (0-based) each slot draws from: one per piece, so timbre varies across the
# corpus and stays fixed within a piece. Drums: GM drum kits (bank 128 presets).
FAMILIES: dict[str, list[int]] = {
    "piano": [0, 1, 2, 4, 5, 6, 7],
    "guitar": [24, 25, 26, 27, 28, 29, 30],
    "bass": [32, 33, 34, 35, 36, 38, 39],
    "other": [40, 41, 42, 48, 49, 56, 57, 60, 64, 65, 68, 71, 73, 80, 81],
    "vocals": [52, 53, 54, 85],
    "drums": [0, 8, 16, 24, 25, 32, 40],
}


class RenderError(UserError):
    pass


def slot_of_program(program: int, is_drum: bool, name: str = "") -> str:
    """The slot of a GM program (0-based) or part name."""
    lowered = name.lower()
    if is_drum:
        return "drums"
    if any(w in lowered for w in ("voice", "vocal", "sing", "choir")) or program in (52, 53, 54, 85):
        return "vocals"
    if 0 <= program <= 7:
        return "piano"
    if 24 <= program <= 31:
        return "guitar"
    if 32 <= program <= 39:
        return "bass"
    return "other"


def find_soundfont(path: str | None) -> Path:
    if path is not None:
        if not Path(path).is_file():
            raise RenderError(f"--soundfont {path} does not exist")
        return Path(path)
    if shutil.which("fluidsynth") is None:
        raise RenderError("fluidsynth is not installed: install the Debian packages fluidsynth "
                          "and fluid-soundfont-gm (apt-get install fluidsynth fluid-soundfont-gm)")
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise RenderError("no General MIDI SoundFont found: install the Debian package "
                      "fluid-soundfont-gm, or point at one with --soundfont PATH")


# -- one piece ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    piece_id: str
    kind: str  # folk | chorale | midi | score
    source: Source
    recipe: str | None
    variant: int
    seed: int


@dataclass
class Settings:
    out: Path
    sample_rate: int
    soundfont: Path
    max_seconds: float
    min_seconds: float
    overwrite: bool


def piece_seed(seed: int, piece_id: str) -> int:
    """A seed from (--seed, piece id): results do not depend on --jobs or order."""
    return int(hashlib.sha256(f"{seed}:{piece_id}".encode()).hexdigest()[:8], 16)


def vary(arr: Arrangement, variant: int, rng: np.random.Generator) -> tuple[Arrangement, dict]:
    """Variant 0 is the score as written; others transpose and change tempo and velocity."""
    transpose = int(rng.integers(-5, 7)) if variant else 0
    tempo_scale = float(rng.uniform(0.85, 1.2)) if variant else 1.0
    velocity_scale = float(rng.uniform(0.8, 1.1)) if variant else 1.0
    parts = {}
    for slot, notes in arr.parts.items():
        shift = 0 if slot in arr.drum_slots else transpose
        parts[slot] = [(s, d, min(127, max(0, p + shift)),
                        int(min(127, max(1, v * velocity_scale)))) for s, d, p, v in notes]
    tempo = arr.tempo
    while tempo > 180:  # ABC tempos are often given per eighth note: keep it playable
        tempo /= 2
    while tempo < 50:
        tempo *= 2
    varied = Arrangement(parts, tempo * tempo_scale, arr.title, arr.drum_slots)
    return varied, {"transpose": transpose, "tempo_scale": round(tempo_scale, 4),
                    "velocity_scale": round(velocity_scale, 4)}


def to_midi(notes: list[Note], tempo: float, program: int, is_drum: bool, max_seconds: float):
    import pretty_midi
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=0 if is_drum else program, is_drum=is_drum)
    spq = 60.0 / tempo
    for start, dur, pitch, vel in notes:
        t0, t1 = start * spq, min((start + dur) * spq, max_seconds)
        if t1 - t0 < 0.02:  # a note cut to nothing would lose its note-off and ring forever
            continue
        inst.notes.append(pretty_midi.Note(velocity=vel, pitch=pitch, start=t0, end=t1))
    if is_drum and program:  # a drum kit other than Standard: select it with a program change
        inst.program = program
    pm.instruments.append(inst)
    return pm


def synthesize(midi_path: Path, wav_path: Path, soundfont: Path, rate: int,
               seconds: float) -> np.ndarray:
    """Render a MIDI file with the fluidsynth CLI; returns mono float32 samples.

    A stuck note could keep fluidsynth rendering for ever: a time limit far above the
    piece's own length turns that into a skipped piece.
    """
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-C", "0", "-r", str(rate), "-F",
           str(wav_path), str(soundfont), str(midi_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30 + seconds)
    except subprocess.TimeoutExpired:
        raise ScoreError("fluidsynth did not finish (a note that never ends?)") from None
    if proc.returncode != 0 or not wav_path.is_file():
        raise ScoreError(f"fluidsynth failed: {(proc.stderr or proc.stdout).strip()[:120]}")
    data, _ = sf.read(str(wav_path), dtype="float32", always_2d=True)
    return data.mean(axis=1)


def render_piece(job: Job, settings: Settings) -> dict:
    """Render one piece into place. Returns its meta; raises ScoreError for bad input."""
    final = settings.out / job.piece_id
    rng = np.random.default_rng(job.seed)
    arrangement = load_arrangement(job)
    if not any(arrangement.parts.values()):
        raise ScoreError("no notes")
    arrangement, changes = vary(arrangement, job.variant, rng)
    programs = {slot: int(rng.choice(FAMILIES[slot])) for slot in sorted(arrangement.parts)}
    tmp = settings.out / f".{job.piece_id}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        stems = {}
        with tempfile.TemporaryDirectory() as work:
            for slot, notes in sorted(arrangement.parts.items()):
                if not notes:
                    continue
                is_drum = slot in arrangement.drum_slots
                midi = to_midi(notes, arrangement.tempo, programs[slot], is_drum,
                               settings.max_seconds)
                if not midi.instruments[0].notes:
                    continue
                midi.write(str(Path(work) / f"{slot}.mid"))
                stems[slot] = synthesize(Path(work) / f"{slot}.mid", Path(work) / f"{slot}.wav",
                                         settings.soundfont, settings.sample_rate,
                                         settings.max_seconds)
        if not stems:
            raise ScoreError("no notes")
        length = min(max(len(s) for s in stems.values()),
                     int((settings.max_seconds + 1.0) * settings.sample_rate))
        if length < settings.min_seconds * settings.sample_rate:
            raise ScoreError(f"too short ({length / settings.sample_rate:.1f} s)")
        block = np.zeros((len(stems), length), dtype=np.float32)
        for i, s in enumerate(stems.values()):
            block[i, : min(len(s), length)] = s[:length]
        peak = float(np.abs(block.sum(axis=0)).max())
        gain = min(1.0, 10 ** (-1 / 20) / peak) if peak > 0 else 1.0
        block *= gain
        for slot, samples in zip(stems, block):
            save_audio(tmp / f"{slot}.wav", torch.from_numpy(samples)[None], settings.sample_rate)
        save_audio(tmp / "mix.wav", torch.from_numpy(block.sum(axis=0))[None],
                   settings.sample_rate)
        meta = {
            "piece_id": job.piece_id, "source": _display(job.source.path), "tune": job.source.index,
            "title": arrangement.title, "recipe": job.recipe, "variant": job.variant,
            "seed": job.seed, "programs": {s: programs[s] for s in stems},
            "tempo": round(arrangement.tempo, 3), **changes, "gain": gain,
            "duration": length / settings.sample_rate, "sample_rate": settings.sample_rate,
            "slots": list(stems),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")  # last: marks done
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return meta
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_arrangement(job: Job) -> Arrangement:
    if job.kind in ("folk", "chorale"):
        return arrange(job.kind, load_tune(job.source), job.recipe)
    if job.kind == "midi":
        return midi_arrangement(Path(job.source.path), job.recipe)
    score = load_tune(job.source)
    if job.recipe == "folk-band":
        return arrange("folk", score, job.recipe)
    if job.recipe in ("chorales", "solo-piano") and len(getattr(score, "parts", [])) >= 4:
        return arrange("chorale", score, job.recipe)
    return score_arrangement(score, job.recipe)


def score_arrangement(score, recipe: str | None) -> Arrangement:
    """A score's parts onto slots by their instrument (program or name)."""
    from .recipes import part_notes, tempo_of
    parts: dict[str, list[Note]] = {}
    for part in getattr(score, "parts", [score]):
        notes = part_notes(part)
        if not notes:
            continue
        inst = part.getInstrument(returnDefault=True)
        program = inst.midiProgram if inst.midiProgram is not None else 0
        name = f"{inst.instrumentName or ''} {part.partName or ''}"
        slot = "piano" if recipe == "solo-piano" else slot_of_program(program, False, name)
        parts.setdefault(slot, []).extend(notes)
    if not parts:
        raise ScoreError("no notes")
    return Arrangement(parts, tempo_of(score))


def midi_arrangement(path: Path, recipe: str | None) -> Arrangement:
    """A MIDI file's instruments onto slots by GM family (several parts merge into a slot)."""
    import pretty_midi
    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido/pretty_midi raise many kinds for a broken file
        raise ScoreError(f"not a readable MIDI file ({type(exc).__name__})") from None
    tempo = 120.0
    _, tempi = pm.get_tempo_changes()
    if len(tempi):
        tempo = float(tempi[0])
    spq = 60.0 / tempo
    pitched = any(inst.notes for inst in pm.instruments if not inst.is_drum)
    if not pitched and any(inst.notes for inst in pm.instruments) and recipe is not None:
        raise ScoreError("only drums, and the recipe needs pitched parts")
    parts: dict[str, list[Note]] = {}
    for inst in pm.instruments:
        slot = "piano" if recipe == "solo-piano" and not inst.is_drum else \
            slot_of_program(inst.program, inst.is_drum, inst.name)
        if recipe == "solo-piano" and inst.is_drum:
            continue
        parts.setdefault(slot, []).extend(
            (n.start / spq, (n.end - n.start) / spq, n.pitch, n.velocity) for n in inst.notes)
    parts = {k: v for k, v in parts.items() if v}
    if not parts:
        raise ScoreError("no notes")
    return Arrangement(parts, tempo)


# -- the run ------------------------------------------------------------------------------------
SCORE_EXTENSIONS = {".xml", ".musicxml", ".mxl", ".krn", ".abc", ".mei"}
MIDI_EXTENSIONS = {".mid", ".midi"}


def input_jobs(inputs: Sequence[str], recipe: str | None, report) -> list[tuple[str, Source]]:
    """(kind, source) for user inputs: files, folders, corpus names."""
    found: list[tuple[str, Source]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files = [path]
        else:
            from music21 import corpus
            try:
                resolved = corpus.getWork(item)
            except Exception:
                resolved = None
            if not resolved:
                report(item, "not a file, folder, or music21 corpus name")
                continue
            resolved = resolved if isinstance(resolved, list) else [resolved]
            files = [Path(str(r)) for r in resolved[:1]]
        for f in files:
            ext = f.suffix.lower()
            if ext in MIDI_EXTENSIONS:
                found.append(("midi", Source(str(f))))
            elif ext in SCORE_EXTENSIONS:
                found.append(("score", Source(str(f))))
            elif path.is_file():
                report(f, f"unsupported file type '{ext}'")
    return found


def make_jobs(sources: list[tuple[str, Source]], recipe: str | None, variants: int,
              seed: int) -> list[Job]:
    jobs, seen = [], set()
    for kind, source in sources:
        base = _slug(source.name)
        while base in seen:
            base += "_"
        seen.add(base)
        for v in range(variants):
            piece_id = f"{base}_v{v}"
            jobs.append(Job(piece_id, kind, source, recipe, v, piece_seed(seed, piece_id)))
    return jobs


def _display(path: str) -> str:
    """Corpus files as `music21:<collection>/<file>`, other paths as given."""
    marker = "/music21/corpus/"
    return "music21:" + path.split(marker, 1)[1] if marker in path else path


def _slug(text: str) -> str:
    import re
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._")[:80] or "piece"


def _run_job(args: tuple[Job, Settings]) -> tuple[Job, dict | None, str | None]:
    job, settings = args
    try:
        return job, render_piece(job, settings), None
    except ScoreError as exc:
        return job, None, str(exc)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stemcodec render", description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="*", help="MIDI files, score files, folders, music21 corpus "
                                             "names (bach/bwv66.6); none: the recipe's own pieces")
    p.add_argument("--out", type=Path, help="corpus folder to write")
    p.add_argument("--recipe", choices=sorted(RECIPES), default=None,
                   help="how to arrange the pieces (and, with no INPUT, which pieces)")
    p.add_argument("--list-recipes", action="store_true", help="list the recipes and exit")
    p.add_argument("--limit", type=int, default=None, help="render only the first N pieces")
    p.add_argument("--variants", type=int, default=1,
                   help="versions per piece (transposed, other tempo, velocity, programs)")
    p.add_argument("--sample-rate", type=int, default=24000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=30.0, help="cut pieces at this length")
    p.add_argument("--min-seconds", type=float, default=2.0, help="skip shorter pieces")
    p.add_argument("--jobs", type=int, default=1, help="pieces rendered in parallel")
    p.add_argument("--soundfont", default=None, help="a General MIDI .sf2 (default: Debian's)")
    p.add_argument("--overwrite", action="store_true", help="render finished pieces again")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_recipes:
        from .recipes import chorale_sources, folk_sources
        counts = {"folk-band": len(folk_sources()), "chorales": len(chorale_sources())}
        counts["solo-piano"] = counts["folk-band"] + counts["chorales"]
        for name, (slots, text) in RECIPES.items():
            print(f"{name:<11} {counts[name]:>5} pieces  slots: {slots}  ({text})")
        return 0
    if args.out is None:
        raise UserError("--out CORPUS_DIR is required")
    if not args.inputs and args.recipe is None:
        raise UserError("give INPUT files/folders/corpus names, or --recipe NAME "
                        f"({', '.join(RECIPES)}); --list-recipes shows them")
    if args.variants < 1 or (args.limit is not None and args.limit < 1):
        raise UserError("--variants and --limit must be positive")
    soundfont = find_soundfont(args.soundfont)
    settings = Settings(args.out, args.sample_rate, soundfont, args.max_seconds,
                        args.min_seconds, args.overwrite)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob(".*.tmp"):  # pieces an interrupted run left unfinished
        shutil.rmtree(stale, ignore_errors=True)
    skipped: list[str] = []

    def report(item, reason: str) -> None:
        skipped.append(str(item))
        tqdm.write(f"skipped {item}: {reason}", file=sys.stderr)

    if args.inputs:
        sources = input_jobs(args.inputs, args.recipe, report)
    else:
        sources = []
        for kind, source in recipe_sources(args.recipe):
            sources.append((kind, source))
            if args.limit is not None and len(sources) >= args.limit:
                break
    if args.limit is not None:
        sources = sources[: args.limit]
    jobs = make_jobs(sources, args.recipe, args.variants, args.seed)
    todo = [j for j in jobs if args.overwrite or not (args.out / j.piece_id / "meta.json").is_file()]
    done_before = len(jobs) - len(todo)
    start = time.perf_counter()
    written, seconds = 0, 0.0
    bar = tqdm(total=len(todo), unit="piece", desc="render", file=sys.stderr, dynamic_ncols=True)
    work = [(j, settings) for j in todo]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = pool.map(_run_job, work, chunksize=1)
            for job, meta, error in results:
                written, seconds = _tally(job, meta, error, report, written, seconds, bar)
    else:
        for item in work:
            job, meta, error = _run_job(item)
            written, seconds = _tally(job, meta, error, report, written, seconds, bar)
    bar.close()
    took = time.perf_counter() - start
    speed = f", {seconds / took:.0f}x real time" if took > 0 and seconds else ""
    print(f"rendered {written} pieces ({seconds / 60:.1f} min of audio) in {took:.1f} s{speed}; "
          f"{done_before} already there, {len(skipped)} skipped; corpus: {args.out}")
    return 0


def _tally(job, meta, error, report, written, seconds, bar):
    if error is not None:
        report(f"{job.source.path}" + (f"#{job.source.index}" if job.source.index else ""), error)
    else:
        written += 1
        seconds += meta["duration"]
    bar.update(1)
    return written, seconds


if __name__ == "__main__":
    raise SystemExit(main())
