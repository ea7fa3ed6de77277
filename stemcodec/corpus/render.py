"""`python -m stemcodec.render`: scores -> a multitrack corpus of exact stems (FluidSynth).

    python -m stemcodec.render INPUT... --out CORPUS [--recipe NAME] [--variants 3]
    python -m stemcodec.render --recipe folk-band --limit 40 --out CORPUS
    python -m stemcodec.render --list-recipes

INPUT: MIDI files, scores music21 reads (MusicXML, kern, ABC), folders of them, or music21
corpus names (bach/bwv66.6). With no INPUT, the recipe's own pieces (the first 200 unless
--limit says otherwise).

Each piece is written as

    CORPUS/<piece-id>/<slot>.wav   one stem per slot (mono float32 unless --channels/--pcm16)
                      <slot>.mid   the notes that stem plays, as fluidsynth rendered them
                                   (times in seconds of the audio: corpus.texture reads them)
                      mix.wav      the sum of the stems as written (float32)
                      meta.json    source, recipe, programs, tempo, transposition, seed...,
                                   and per stem its instrument (`stem_instruments`: GM program,
                                   name, family, each part's own and where it came from)

Per piece: parse -> arrange onto slots -> vary (variant > 0: transpose, tempo, velocity) ->
cut at a bar line before --max-seconds -> draw one GM program per slot (a user's parts keep
their own instruments: the MIDI program, the score's, or its instrument's name) -> one MIDI
file per slot, rendered by fluidsynth -> stems padded to one length (the longest, release tail
kept up to 2 s past the last note) -> one gain for the whole piece (mix and every stem peak at
-1 dBFS) -> stems and their MIDI, then mix.wav, then meta.json, in `CORPUS/.<piece-id>.tmp/`,
renamed into place at the end. A piece is done when its folder (with meta.json) exists: a
rerun skips it, and a crashed run leaves only a hidden .tmp folder, removed by the next run.

Seeds come from (--seed, piece id), so the audio depends neither on --jobs nor on order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from ..audio import is_silent, save_audio
from ..errors import UserError, cli
from ..files import speed as real_time
from .arrangement import Arrangement, ScoreError, Track, cut, vary
from .arrangers import arrange
from .inputs import arrange_input, find_inputs
from .instruments import (
    DEFAULT_PROGRAMS,
    draw_like,
    draw_program,
    gm_group,
    program_name,
    slot_of_program,
)
from .layout import piece_base, variant_id
from .recipes import RECIPES
from .scores import Source, load_score
from .synth import find_synth, synthesize, write_midi

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 200  # a recipe's own pieces rendered when --limit is not given
TAIL_SECONDS = 2.0  # release and reverb kept after the last note
FADE_SECONDS = 0.05  # where a longer tail is cut
PEAK_DB = -1.0
MAX_GAIN = 16.0


@dataclass(frozen=True)
class Job:
    piece_id: str
    source: Source
    recipe: str | None
    variant: int
    seed: int


@dataclass(frozen=True)
class Settings:
    out: Path
    soundfont: Path
    sample_rate: int = 24000
    channels: int = 1
    max_seconds: float = 30.0
    min_seconds: float = 4.0
    reprogram: bool = False
    reverb: bool = True
    pcm16: bool = False


def piece_seed(seed: int, piece_id: str) -> int:
    return int(hashlib.sha256(f"{seed}:{piece_id}".encode()).hexdigest()[:8], 16)


def make_jobs(sources: Sequence[Source], recipe: str | None, variants: int,
              seed: int) -> list[Job]:
    """Variants 0..N-1 of every source, each with its own piece id and seed."""
    jobs, taken = [], set()
    for source in sources:
        base = piece_base(source.name, recipe, taken)
        for v in range(variants):
            piece_id = variant_id(base, v)
            jobs.append(Job(piece_id, source, recipe, v, piece_seed(seed, piece_id)))
    return jobs


# -- one piece ----------------------------------------------------------------------------
def load_arrangement(job: Job, rng: np.random.Generator) -> Arrangement:
    source = job.source
    if source.kind in RECIPES:  # a recipe's own piece
        return arrange(load_score(source), source.kind, job.recipe, rng)
    return arrange_input(source, job.recipe, rng)


def choose_programs(arr: Arrangement, recipe: str | None, reprogram: bool,
                    rng: np.random.Generator) -> dict[str, list[tuple[Track, int]]]:
    """(track, program) per slot; each track's `origin` says where its program came from.

    A recipe's tracks take the slot's drawn program ("drawn"). A user's part keeps its own
    (origin midi, score or name), or with `reprogram` gets one drawn from its own GM family
    of eight ("drawn"). A user's part with no program, or with one of another slot's family
    (a piano program named "Lead Vocal"), plays the slot's default program ("default"), with
    `reprogram` the slot's drawn one.
    """
    chosen: dict[str, list[tuple[Track, int]]] = {}
    for slot in arr.slots():
        drawn = draw_program(slot, rng)  # drawn even where unused: seeds give the same draws
        alike: dict[int, int] = {}
        pairs = []
        for track in arr.parts[slot]:
            if not track.notes:
                continue
            own = track.program
            fits = own is not None and slot_of_program(own, track.is_drum) == slot
            if recipe is not None:
                program, origin = drawn, "drawn"
            elif not fits:
                program, origin = (drawn, "drawn") if reprogram else (DEFAULT_PROGRAMS[slot],
                                                                      "default")
            elif reprogram:  # one draw per GM family in the slot
                family = -1 if track.is_drum else own // 8
                if family not in alike:
                    alike[family] = draw_like(own, track.is_drum, rng)
                program, origin = alike[family], "drawn"
            else:
                program, origin = own, track.origin or "midi"
            pairs.append((replace(track, origin=origin), int(program)))
        chosen[slot] = pairs
    return chosen


def stem_instruments(programs: dict[str, list[tuple[Track, int]]]) -> dict[str, dict]:
    """meta.json's `stem_instruments`: per stem the instrument that labels it (the program
    that sounds longest in it: one stem may hold several parts of a family, a quartet's four
    strings in `other`) and every part's own instrument and name."""
    out = {}
    for slot, pairs in programs.items():
        sounding: dict[tuple[int, bool], float] = {}
        for track, program in pairs:
            key = (program, track.is_drum)
            sounding[key] = sounding.get(key, 0.0) + sum(d for _, d, _, _ in track.notes)
        program, drum = max(sounding, key=sounding.__getitem__)  # ties: the first part's
        main = next(t for t, p in pairs if (p, t.is_drum) == (program, drum))
        out[slot] = {
            "program": program, "instrument": program_name(program, drum),
            "family": gm_group(program, drum), "drum": drum, "from": main.origin,
            "parts": [{"part": t.name, "program": p, "instrument": program_name(p, t.is_drum),
                       "from": t.origin} for t, p in pairs],
        }
    return out


@dataclass
class Plan:
    """Everything about a piece but its sound."""

    arrangement: Arrangement
    changes: dict  # transpose, tempo_scale, velocity_scale
    programs: dict[str, list[tuple[Track, int]]]

    @property
    def seconds(self) -> float:
        return self.arrangement.length() * 60.0 / self.arrangement.tempo


def plan_piece(job: Job, settings: Settings) -> Plan:
    """Parse, arrange, vary, cut and draw programs: all seeded by the job's seed."""
    arr_rng, vary_rng, program_rng = (np.random.default_rng(s) for s in
                                      np.random.SeedSequence(job.seed).spawn(3))
    with warnings.catch_warnings():  # music21 warns about every odd measure
        warnings.simplefilter("ignore")
        arrangement = load_arrangement(job, arr_rng)
    arrangement, changes = vary(arrangement, job.variant, vary_rng)
    qps = arrangement.tempo / 60.0
    arrangement = cut(arrangement, settings.max_seconds * qps, settings.min_seconds * qps)
    if not arrangement.slots():
        raise ScoreError("no notes")
    programs = choose_programs(arrangement, job.recipe, settings.reprogram, program_rng)
    return Plan(arrangement, changes, programs)


def render_piece(job: Job, settings: Settings) -> dict:
    """Render one piece into place and return its meta; ScoreError for an unusable piece."""
    plan = plan_piece(job, settings)
    arrangement, changes, programs = plan.arrangement, plan.changes, plan.programs
    music_seconds = plan.seconds
    if music_seconds < settings.min_seconds:
        raise ScoreError(f"too short ({music_seconds:.1f} s, --min-seconds "
                         f"{settings.min_seconds:g})")
    required = RECIPES[job.recipe].slots if job.recipe else ()
    missing = [s for s in required if s not in arrangement.slots()]
    if missing:
        raise ScoreError(f"no notes for {', '.join(missing)}")
    stems, midis = synthesize_stems(programs, arrangement.tempo, settings,
                                    timeout=60.0 + 4 * music_seconds)
    stems, gain = level(stems, settings.sample_rate, music_seconds)
    for slot in list(stems):
        if is_silent(torch.from_numpy(stems[slot])):
            if slot in required:
                raise ScoreError(f"{slot} came out silent")
            logger.info("%s: %s is silent, left out", job.piece_id, slot)
            del stems[slot]
    meta = {
        "piece_id": job.piece_id,
        "source": str(job.source),
        "recipe": job.recipe,
        "title": arrangement.title,
        "variant": job.variant,
        "seed": job.seed,
        "slots": list(stems),
        "programs": {s: _one_or_list([p for _, p in programs[s]]) for s in stems},
        "instruments": {s: _one_or_list([program_name(p, t.is_drum) for t, p in programs[s]])
                        for s in stems},
        "stem_instruments": stem_instruments({s: programs[s] for s in stems}),
        "tempo": round(arrangement.tempo, 3),
        **changes,
        "duration": round(next(iter(stems.values())).shape[-1] / settings.sample_rate, 4),
        "sample_rate": settings.sample_rate,
        "channels": settings.channels,
        "gain": round(gain, 6),
        "format": "pcm16 stems, float32 mix" if settings.pcm16 else "float32",
        "soundfont": settings.soundfont.name,
        "reverb": settings.reverb,
        **({"arrangement": arrangement.info} if arrangement.info else {}),
    }
    write_piece(settings.out, job.piece_id, stems, meta, settings,
                {s: midis[s] for s in stems})
    return meta


def synthesize_stems(programs: dict[str, list[tuple[Track, int]]], tempo: float,
                     settings: Settings,
                     timeout: float) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
    """Per slot, its audio and the MIDI file it was rendered from."""
    stems, midis = {}, {}
    with tempfile.TemporaryDirectory(prefix="stemcodec-render-") as work:
        for slot, pairs in programs.items():
            midi_path, wav_path = Path(work) / f"{slot}.mid", Path(work) / f"{slot}.wav"
            if not write_midi(pairs, tempo, midi_path):
                continue
            stems[slot] = synthesize(midi_path, wav_path, settings.soundfont,
                                     settings.sample_rate, settings.channels, settings.reverb,
                                     timeout)
            midis[slot] = midi_path.read_bytes()
    if not stems:
        raise ScoreError("no notes")
    return stems, midis


def level(stems: dict[str, np.ndarray], rate: int,
          music_seconds: float) -> tuple[dict[str, np.ndarray], float]:
    """Pad every stem to the longest (at most TAIL_SECONDS past the music, faded out where
    cut) and scale all by one gain: the mix and every stem peak at PEAK_DB."""
    longest = max(s.shape[-1] for s in stems.values())
    length = min(longest, int(round((music_seconds + TAIL_SECONDS) * rate)))
    block = np.zeros((len(stems), next(iter(stems.values())).shape[0], length), np.float32)
    for i, stem in enumerate(stems.values()):
        block[i, :, : min(stem.shape[-1], length)] = stem[:, :length]
    if longest > length:
        fade = int(FADE_SECONDS * rate)
        block[..., length - fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = max(float(np.abs(block.sum(axis=0)).max()), float(np.abs(block).max()))
    gain = min(MAX_GAIN, 10 ** (PEAK_DB / 20) / peak) if peak > 0 else 1.0
    block *= np.float32(gain)
    return dict(zip(stems, block)), gain


def write_piece(out: Path, piece_id: str, stems: dict[str, np.ndarray], meta: dict,
                settings: Settings, midis: dict[str, bytes] | None = None) -> None:
    """Stems (each with its MIDI file, where given), then mix.wav (the sum of the stems as
    read back), then meta.json, in a hidden folder renamed into place: a piece folder exists
    only when complete."""
    tmp = out / f".{piece_id}.tmp"
    final = out / piece_id
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        total = None
        for slot, samples in stems.items():
            path = save_audio(tmp / f"{slot}.wav", torch.from_numpy(samples),
                              settings.sample_rate, "PCM_16" if settings.pcm16 else None)
            written, _ = sf.read(str(path), dtype="float32", always_2d=True)
            total = written if total is None else total + written
            if midis and slot in midis:
                (tmp / f"{slot}.mid").write_bytes(midis[slot])
        save_audio(tmp / "mix.wav", torch.from_numpy(np.ascontiguousarray(total.T)),
                   settings.sample_rate)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        if final.exists():  # --overwrite
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _one_or_list(items: list):
    unique = list(dict.fromkeys(items))
    return unique[0] if len(unique) == 1 else unique


def _run_job(args: tuple[Job, Settings]) -> tuple[Job, dict | None, str | None]:
    job, settings = args
    try:
        return job, render_piece(job, settings), None
    except ScoreError as exc:
        return job, None, str(exc)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            ZeroDivisionError) as exc:  # a score that trips music21 or us: one piece lost
        logger.debug("%s failed", job.piece_id, exc_info=True)
        return job, None, f"failed ({type(exc).__name__}: {str(exc)[:100]})"


# -- the command ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stemcodec render", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Render scores into a multitrack corpus of exact stems (FluidSynth).",
        epilog="recipes: " + "; ".join(f"{n} ({', '.join(r.slots)})" for n, r in RECIPES.items()))
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="MIDI or score files, folders of them, music21 corpus names "
                        "(bach/bwv66.6); none: the recipe's own pieces")
    p.add_argument("--out", type=Path, help="corpus folder to write")
    p.add_argument("--recipe", choices=list(RECIPES), default=None,
                   help="how to arrange the pieces (and, with no INPUT, which pieces)")
    p.add_argument("--list-recipes", action="store_true",
                   help="list the recipes with their slots and pieces, and exit")
    p.add_argument("--limit", default=None, metavar="N|all",
                   help=f"only the first N pieces (default: {DEFAULT_LIMIT} of a recipe's own "
                        "pieces, all INPUT pieces)")
    p.add_argument("--skip", type=int, default=0, metavar="N",
                   help="pass over the first N pieces (e.g. a held-out set after a training "
                        "corpus rendered with --limit N)")
    p.add_argument("--variants", type=int, default=3,
                   help="versions per piece; variant 0 as written, the others transposed, "
                        "faster or slower, louder or softer (default 3); all draw programs")
    p.add_argument("--sample-rate", type=int, default=24000)
    p.add_argument("--channels", type=int, choices=(1, 2), default=1, help="1 mono, 2 stereo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seconds", type=float, default=30.0,
                   help="cut pieces at the last bar line before this (default 30)")
    p.add_argument("--min-seconds", type=float, default=4.0, help="skip shorter pieces")
    p.add_argument("--jobs", type=int, default=len(os.sched_getaffinity(0)),
                   help="pieces rendered in parallel (default: the CPU cores)")
    p.add_argument("--soundfont", default=None,
                   help="a General MIDI .sf2 (default: Debian's FluidR3_GM.sf2)")
    p.add_argument("--reprogram", action="store_true",
                   help="INPUT files without a recipe: draw each part's program from its GM "
                        "family instead of keeping its own instrument (the MIDI program, the "
                        "score's, or the one its instrument name stands for)")
    p.add_argument("--dry", action="store_true", help="no reverb")
    p.add_argument("--pcm16", action="store_true",
                   help="16-bit stems (40%% less disk); mix.wav stays their exact float sum")
    p.add_argument("--overwrite", action="store_true", help="render finished pieces again")
    return p


def list_recipes() -> None:
    for name, recipe in RECIPES.items():
        print(f"{name:<16} {len(recipe.sources()):>6} pieces  slots: {', '.join(recipe.slots)}"
              f"  ({recipe.text})")
    print(f"(a recipe renders its first {DEFAULT_LIMIT} pieces unless --limit N|all says "
          "otherwise, each in --variants versions, 3 by default)")


def parse_limit(text: str | None, own_pieces: bool) -> int | None:
    if text is None:
        return DEFAULT_LIMIT if own_pieces else None
    if text.lower() in ("all", "0"):
        return None
    if not text.isdigit():
        raise UserError(f"--limit {text}: give a positive number or 'all'")
    return int(text)


def check_settings(args) -> None:
    if args.out is None:
        raise UserError("--out CORPUS_DIR is required")
    if not args.inputs and args.recipe is None:
        raise UserError(f"give INPUT files, folders or corpus names, or --recipe NAME "
                        f"({', '.join(RECIPES)}); --list-recipes shows the recipes")
    if args.variants < 1 or args.jobs < 1:
        raise UserError("--variants and --jobs must be at least 1")
    if args.skip < 0:
        raise UserError(f"--skip {args.skip}: give 0 or more pieces to pass over")
    if not 8000 <= args.sample_rate <= 96000:
        raise UserError(f"--sample-rate {args.sample_rate}: fluidsynth renders 8000-96000 Hz")
    if not 0 < args.min_seconds < args.max_seconds:
        raise UserError("--min-seconds must be positive and below --max-seconds")


def check_existing(out: Path, jobs: list[Job], settings: Settings) -> list[Job]:
    """Jobs still to do; a finished piece rendered at another rate or channel count is an
    error (a corpus has one format)."""
    todo = []
    for job in jobs:
        meta_path = out / job.piece_id / "meta.json"
        if not meta_path.is_file():
            todo.append(job)
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            todo.append(job)
            continue
        found = (meta.get("sample_rate"), meta.get("channels", 1))
        if found != (settings.sample_rate, settings.channels):
            raise UserError(f"{out} holds pieces at {found[0]} Hz, {found[1]} channel(s); "
                            "render into another folder, or use the same --sample-rate and "
                            "--channels, or --overwrite")
    return todo


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_recipes:
        list_recipes()
        return 0
    check_settings(args)
    limit = parse_limit(args.limit, own_pieces=not args.inputs)
    soundfont = find_synth(args.soundfont)
    settings = Settings(args.out, soundfont, args.sample_rate, args.channels, args.max_seconds,
                        args.min_seconds, args.reprogram, not args.dry, args.pcm16)
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in args.out.glob(".*.tmp"):  # pieces an interrupted run left unfinished
        shutil.rmtree(stale, ignore_errors=True)

    skipped, told = 0, set()

    def report(item, reason: str) -> None:
        """One line per input (its variants fail alike); each piece counts."""
        nonlocal skipped
        skipped += 1
        if str(item) not in told:
            told.add(str(item))
            tqdm.write(f"skipped {item}: {reason}", file=sys.stderr)

    if args.inputs:
        sources = find_inputs(args.inputs, report)
    else:
        sources = list(RECIPES[args.recipe].sources())
    if args.skip and args.skip >= len(sources):
        raise UserError(f"--skip {args.skip}: there are only {len(sources)} pieces to skip over")
    sources = sources[args.skip:]
    sources = sources[:limit] if limit is not None else sources
    jobs = make_jobs(sources, args.recipe, args.variants, args.seed)
    todo = jobs if args.overwrite else check_existing(args.out, jobs, settings)

    start = time.perf_counter()
    written, seconds = 0, 0.0
    work = [(job, settings) for job in todo]
    with tqdm(total=len(todo), unit="piece", desc="render", file=sys.stderr,
              dynamic_ncols=True) as bar:
        if args.jobs > 1 and len(work) > 1:
            # forkserver: forking a process that runs threads (torch, tqdm) can deadlock
            pool = ProcessPoolExecutor(min(args.jobs, len(work)),
                                       mp_context=multiprocessing.get_context("forkserver"))
            results = pool.map(_run_job, work, chunksize=1)
        else:
            pool, results = None, map(_run_job, work)
        try:
            for job, meta, error in results:  # in job order, whatever finishes first
                if error is not None:
                    report(job.source, error)
                else:
                    written += 1
                    seconds += meta["duration"]
                bar.update(1)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    took = time.perf_counter() - start
    speed = f", {real_time(seconds, took)} real time" if written and took > 0 else ""
    print(f"rendered {written} pieces ({_hours(seconds)} of audio) in {took:.0f} s{speed}; "
          f"{len(jobs) - len(todo)} already there, {skipped} skipped; corpus: {args.out}")
    return 0


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    raise SystemExit(main())
