"""`python -m stemcodec.prepare SONGS_DIR --out CACHE_DIR`: songs -> per-slot token cache.

Three kinds of input, found by walking SONGS_DIR:
  * a stem folder (`SONG/<instrument>.wav` ..., optional `SONG/mix.wav`, what `render` writes):
    encoded as it is, no separation;
  * with `--instrument NAME`: every audio file is one stem of that instrument (solo mode);
  * any other audio file: a mix, separated into stems with Demucs first.

Resumable: a song whose entry exists for the same files and codec is skipped; anything
interrupted is redone. Bad files get one line `skipped <path>: <reason>` and the run goes on;
a file used despite something odd (a stretch that could not be decoded, a dead channel, a DC
offset, silence) gets one line `warning <path>: <what>` and a flag in its entry.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..audio import AUDIO_EXTENSIONS, is_audio_path
from ..errors import AudioError, UserError, cli
from ..files import speed
from ..memory import return_freed_memory
from ..objects import UNKNOWN, stem_objects
from ..slots import DEFAULT_VOCABULARY, SlotSpec, parse_slots
from .cache import FORMAT_VERSION, CacheError, SongEntry, write_json
from .encode_song import Progress, encode_song
from .layout import read_piece, song_id
from .parallel import Ranks, WorkerSettings, run_jobs
from .walk import shown, walk_songs

logger = logging.getLogger(__name__)

# the summary's words for a song's flags (SongEntry.flags): counts of songs
FLAG_NAMES = {"dc_offset": "DC offset", "dead_channel": "dead channel",
              "silent": "silent", "unreadable": "with unreadable audio"}
SIDECARS = {".json", ".txt", ".md", ".yaml", ".yml", ".mid", ".midi", ".png", ".jpg"}


@dataclass
class Song:
    """One unit of work: a song id, how to read it, and the files it depends on."""

    id: str
    kind: str  # "stems" | "mix" | "single"
    source: Path
    files: dict[str, Path] = field(default_factory=dict)  # role (slot name or "mix") -> path
    # slot -> instrument object (stemcodec.objects), from a rendered piece's meta.json; empty
    # for separated and single-stem songs, whose instruments nobody labelled
    objects: dict[str, str] = field(default_factory=dict)


@dataclass
class Stats:
    done: int = 0
    cached: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    flagged: dict[str, int] = field(default_factory=dict)  # flag -> songs of this run with it
    seconds: float = 0.0
    separate_time: float = 0.0
    separate_seconds: float = 0.0
    encode_time: float = 0.0
    encode_seconds: float = 0.0

    def add(self, other: Stats) -> None:
        """Count `other`'s songs and times in (a worker's, another rank's)."""
        for name in ("done", "cached", "seconds", "separate_time", "separate_seconds",
                     "encode_time", "encode_seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped += other.skipped
        for flag, n in other.flagged.items():
            self.flagged[flag] = self.flagged.get(flag, 0) + n


def discover(root: Path, slots: SlotSpec, instrument: str | None,
             report: Callable[[Path, str], None]) -> list[Song]:
    """Walk `root` and return the songs in a stable order; report unusable files (and links:
    corpus.walk)."""
    if root.is_file():
        return [_file_song(root, root.parent, slots, instrument)]
    songs: list[Song] = []
    known = (*DEFAULT_VOCABULARY, *slots)
    for folder, entries in walk_songs(root, report):
        piece = read_piece(folder, known) if instrument is None else None
        if piece is not None:  # stems of instruments outside --slots are left out
            usable = set(entries)  # a stem that is a duplicate or a dead link was reported
            files = {name: p for name, p in piece.stems.items() if name in slots and p in usable}
            if piece.mix is not None and piece.mix in usable:
                files["mix"] = piece.mix
            rel = folder.relative_to(root)
            songs.append(Song(song_id(rel if rel.parts else Path(folder.name)), "stems", folder,
                              files, stem_objects(piece.meta, [s for s in slots if s in files])))
            continue
        for path in entries:
            if is_audio_path(path):
                songs.append(_file_song(path, root, slots, instrument))
            elif path.suffix.lower() not in SIDECARS:
                report(path, f"unsupported extension '{path.suffix or '(none)'}' "
                             f"(audio: {', '.join(AUDIO_EXTENSIONS)})")
    return songs


def _file_song(path: Path, root: Path, slots: SlotSpec, instrument: str | None) -> Song:
    rel = path.relative_to(root)
    if instrument is not None:
        return Song(song_id(rel), "single", path, {instrument: path})
    return Song(song_id(rel), "mix", path, {"mix": path})


def fingerprint(path: Path, previous: dict[str, Any] | None) -> dict[str, Any]:
    """size, mtime and content hash; the hash is reused when size and mtime are unchanged."""
    stat = path.stat()
    entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if previous and all(previous.get(k) == v for k, v in entry.items()):
        entry["sha256"] = previous["sha256"]
        return entry
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
    entry["sha256"] = sha.hexdigest()
    return entry


class Preparer:
    """Turns songs into cache entries; holds the codec and (lazily) the separator."""

    def __init__(self, out: Path, codec, slots: SlotSpec, separator_name: str,
                 demucs_repo: Path | None, device: str, with_mix: bool = True,
                 warn: Callable[[Path, str], None] | None = None,
                 progress: Progress | None = None):
        self.out = out
        self.warn = warn or (lambda path, text: logger.warning("warning %s: %s", shown(path),
                                                               text))
        self.codec = codec
        self.slots = slots
        self.separator_name = separator_name
        self.demucs_repo = demucs_repo
        self.device = device
        self.with_mix = with_mix
        self._separator = None
        self.stats = Stats()
        self.progress = progress  # (seconds done, in all) of the song under way

    # -- cache identity -------------------------------------------------------------------
    def open_cache(self, overwrite: bool) -> None:
        """Create cache.json, or check that an existing cache was made the same way."""
        info = {"version": FORMAT_VERSION, "codec": self.codec.info(), "slots": list(self.slots)}
        path = self.out / "cache.json"
        if path.is_file() and not overwrite:
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = None
            if not old or not self.codec.makes(old.get("codec", {}).get("id")):
                other = (old or {}).get("codec", {}).get("id", "an unknown codec")
                raise CacheError(
                    f"{self.out} holds tokens of codec {other}, not {info['codec']['id']}; "
                    "use another --out folder (or --overwrite to start it again)"
                )
            if old.get("slots") != info["slots"]:
                raise CacheError(
                    f"{self.out} was made with slots {','.join(old.get('slots', []))}, "
                    f"not {self.slots}; use another --out folder or the same --slots"
                )
        elif overwrite and (self.out / "songs").is_dir():
            for stale in (self.out / "songs").glob("*.json"):
                stale.unlink()
        write_json(path, info)

    def entry_path(self, song: Song) -> Path:
        return self.out / "songs" / f"{song.id}.json"

    def existing_entry(self, song: Song) -> SongEntry | None:
        path = self.entry_path(song)
        if not path.is_file():
            return None
        try:
            entry = SongEntry.from_json(json.loads(path.read_text()))
        except (ValueError, OSError):
            return None
        return entry if self.codec.makes(entry.codec_id) else None

    def is_done(self, previous: SongEntry | None, song: Song,
                files: dict[str, dict[str, Any]]) -> bool:
        """The entry holds this song's files, as this run would encode them."""
        if previous is None or not _same_content(previous.files, files):
            return False
        if previous.separator != self._separator_id(song):
            return False
        if not (self.out / previous.shard).is_file():
            return False
        # a song prepared --no-mix is not done for a run that wants the mix
        return not self.with_mix or (previous.mix_shard is not None
                                     and (self.out / previous.mix_shard).is_file())

    # -- one song ---------------------------------------------------------------------------
    def process(self, song: Song, root: Path) -> SongEntry:
        """Encode one song (or find it already done). Returns its entry."""
        previous = self.existing_entry(song)
        old_files = previous.files if previous is not None else {}
        files = {}
        for role, path in song.files.items():
            rel = _rel(path, root)
            files[rel] = {"role": role, **fingerprint(path, old_files.get(rel))}
        objects = self.object_names(song)
        if self.is_done(previous, song, files):
            # touched but unchanged: refresh size/mtime; labels are no tokens: an entry from
            # before they were kept (or a meta.json rewritten) gets them without re-encoding
            if previous.files != files or previous.objects != objects:
                previous.files, previous.objects = files, objects
                write_json(self.entry_path(song), previous.to_json())
            self.stats.cached += 1
            return previous

        shard = f"songs/{song.id}.npy"
        mix_shard = f"songs/{song.id}.mix.npy" if self.with_mix else None
        done = encode_song(song.kind, song.files, self.out / shard,
                           self.out / mix_shard if mix_shard else None, self.codec,
                           list(self.slots), self.separator, self.progress)
        stats = self.stats
        stats.encode_time += done.encode_time
        stats.encode_seconds += done.encode_seconds
        stats.separate_time += done.separate_time
        stats.separate_seconds += done.separate_seconds
        entry = SongEntry(
            id=song.id,
            source=_rel(song.source, root),
            kind=song.kind,
            files=files,
            codec_id=self.codec.codec_id,
            separator=self._separator_id(song),
            frames=done.frames,
            seconds=round(done.seconds, 4),
            present=[done.present[n] for n in self.slots],
            silent=[done.silent[n] for n in self.slots],
            shard=shard,
            mix_shard=mix_shard,
            flags=_flag_lines(done.notes, root),
            objects=objects,
        )
        write_json(self.entry_path(song), entry.to_json())  # last: marks the song done
        for path, _, text in done.notes:  # told once the song is in: a skip says it all
            self.warn(path, text)
        stats.done += 1
        stats.seconds += done.seconds
        return entry

    def object_names(self, song: Song) -> list[str] | None:
        """The entry's `objects`: one name per cache slot, or None when no slot is labelled
        (an entry of an unlabelled song stays as it was before labels were kept)."""
        names = [song.objects.get(slot, UNKNOWN) for slot in self.slots]
        return None if all(n == UNKNOWN for n in names) else names

    def _separator_id(self, song: Song) -> str | None:
        return self.separator_name if song.kind == "mix" else None

    def separator(self):
        if self._separator is None:
            from ..separate import load_separator
            self._separator = load_separator(self.separator_name, repo=self.demucs_repo,
                                             device=self.device)
        return self._separator


def attempt(prep: Preparer, song: Song, root: Path) -> tuple[SongEntry | None, str | None]:
    """(entry, None) for a song prepared or found done, (None, why) for one skipped. A
    UserError (missing weights and the like) concerns every song: it stops the run."""
    try:
        return prep.process(song, root), None
    except AudioError as exc:
        return None, str(exc)
    except UserError:
        raise
    except (RuntimeError, ValueError, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0][:160]
        return None, f"{type(exc).__name__}: {first}"


def _flag_lines(notes: list[tuple[Path, str, str]], root: Path) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for path, flag, text in notes:
        flags.setdefault(flag, []).append(f"{_rel(path, root)}: {text}")
    return flags


def _same_content(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return old.keys() == new.keys() and all(
        old[k].get("sha256") == new[k]["sha256"] and old[k].get("role") == new[k]["role"]
        for k in new)


def _rel(path: Path, root: Path) -> str:
    try:
        rel = path.relative_to(root)
    except ValueError:
        return str(path)
    return rel.as_posix() if rel.parts else path.name  # SONGS_DIR itself: its name, not "."


def write_manifest(out: Path, codec_info: dict[str, Any], slots: SlotSpec,
                   entries: list[SongEntry]) -> Path:
    manifest = {
        "version": FORMAT_VERSION,
        "codec": codec_info,
        "slots": list(slots),
        "songs": {e.id: e.to_json() for e in entries},
    }
    write_json(out / "manifest.json", manifest)
    return out / "manifest.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stemcodec prepare",
        description="Separate songs into stems (Demucs), encode each stem (EnCodec) and write "
                    "a resumable token cache for training.")
    p.add_argument("songs", type=Path, help="folder of songs, stem folders, or one audio file")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write (resumable)")
    p.add_argument("--codec", default="encodec_24khz",
                   help="encodec_24khz, encodec_48khz, mini (bundled), debug, or a checkpoint "
                        "folder (default: encodec_24khz)")
    p.add_argument("--bandwidth", type=float, default=None,
                   help="kbps; sets the number of codebooks (encodec_24khz: 1.5/3/6/12/24, default 6)")
    p.add_argument("--codec-repo", type=Path, default=None,
                   help="folder holding the EnCodec weights (default: the torch hub cache)")
    p.add_argument("--separator", default="htdemucs_6s",
                   help="Demucs model for mixed songs: htdemucs_6s (default) or htdemucs")
    p.add_argument("--demucs-repo", type=Path, default=None,
                   help="folder holding the Demucs weights (default: the HF / torch hub caches)")
    p.add_argument("--slots", default=None,
                   help="slots to keep: PRESET[:N] or a list (default: full, or the --instrument)")
    p.add_argument("--instrument", default=None,
                   help="take every file as a stem of this instrument, no separation (solo mode)")
    p.add_argument("--no-mix", action="store_true",
                   help="do not encode the mixed audio (needed only by the mix baseline)")
    p.add_argument("--overwrite", action="store_true", help="redo every song")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or auto")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes on this machine, each preparing a song at a time "
                        "(default 1); under accelerate launch, per process")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return_freed_memory()  # a long song's stages take turns with large blocks
    if not args.songs.exists():
        raise UserError(f"{args.songs} does not exist")
    if args.instrument is not None and args.instrument not in DEFAULT_VOCABULARY:
        raise UserError(f"--instrument {args.instrument}: unknown instrument; "
                        f"valid: {', '.join(DEFAULT_VOCABULARY)}")
    slots = parse_slots(args.slots or args.instrument or "full")
    if args.instrument is not None and args.instrument not in slots:
        raise UserError(f"--instrument {args.instrument} is not among --slots {slots}")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"

    if args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give 1 or more")
    ranks = Ranks.from_env()  # under accelerate launch / torchrun: this process's share
    device = ranks.device(device)

    from ..codec import load_codec
    codec = load_codec(args.codec, args.bandwidth, repository=args.codec_repo, device=device)
    args.out.mkdir(parents=True, exist_ok=True)

    def report(path: Path, reason: str) -> None:
        stats.skipped.append((str(path), reason))
        bar.write(f"skipped {shown(path)}: {reason}", file=sys.stderr)

    def warn(path: Path, what: str) -> None:
        bar.write(f"warning {shown(path)}: {what}", file=sys.stderr)

    under_way: dict[str, str] = {}  # song id -> its name, for songs being encoded

    def progress(done: float, total: float, song_id: str = "") -> None:
        # inside a long song: seconds done (the last song that told, with --jobs)
        name = under_way.get(song_id, next(iter(under_way.values()), ""))
        bar.set_postfix_str(f"{name} {done:.0f}/{total:.0f} s")

    prep = Preparer(args.out, codec, slots, args.separator, args.demucs_repo, device,
                    with_mix=not args.no_mix, warn=warn, progress=progress)
    if ranks.rank == 0:
        prep.open_cache(args.overwrite)  # before the bar: a refusal is one line of its own
    ranks.barrier()  # the others check the cache rank 0 made (and emptied, --overwrite)
    if ranks.rank != 0:
        prep.open_cache(False)
    stats = prep.stats
    bar = tqdm(total=0, unit="song", file=sys.stderr, dynamic_ncols=True,
               desc="prepare" + (f" rank {ranks.rank}/{ranks.world}" if ranks.world > 1 else ""))

    start = time.perf_counter()
    root = args.songs if args.songs.is_dir() else args.songs.parent
    # what is wrong with the folder itself is told once, by rank 0
    songs = discover(args.songs, slots, args.instrument,
                     report if ranks.rank == 0 else lambda path, reason: None)
    mine = [song for song in songs if ranks.owns(song.id)]
    bar.total = len(mine)
    bar.refresh()
    entries: dict[str, SongEntry] = {}

    def finished(song: Song, entry: SongEntry | None, reason: str | None) -> None:
        under_way.pop(song.id, None)
        if entry is None:
            report(song.source, reason or "")
        else:
            entries[song.id] = entry
            for flag in entry.flags:
                stats.flagged[flag] = stats.flagged.get(flag, 0) + 1
        bar.update(1)

    if args.jobs == 1:
        for song in mine:
            under_way.clear()
            under_way[song.id] = shown(song.source.name)[:30]
            bar.set_postfix_str(under_way[song.id])
            finished(song, *attempt(prep, song, root))
    else:
        settings = WorkerSettings(args.out, args.codec, args.bandwidth, args.codec_repo, slots,
                                  args.separator, args.demucs_repo, device, not args.no_mix,
                                  threads=max(1, torch.get_num_threads() // args.jobs))
        under_way.update((song.id, shown(song.source.name)[:30]) for song in mine)
        for song, outcome in run_jobs(mine, root, args.jobs, settings,
                                      lambda sid, done, total: progress(done, total, sid)):
            for path, text in outcome.warnings:
                warn(path, text)
            stats.add(outcome.stats)
            finished(song, outcome.entry, outcome.skipped)
    bar.close()
    took = time.perf_counter() - start
    everyone = ranks.gather((entries, stats, took))
    if ranks.rank == 0:
        merged: dict[str, SongEntry] = {}
        total = Stats()
        for theirs, their_stats, their_time in everyone:
            merged.update(theirs)
            total.add(their_stats)
            took = max(took, their_time)
        # in the order the songs were found, whoever prepared them
        write_manifest(args.out, codec.info(), slots,
                       [merged[song.id] for song in songs if song.id in merged])
        # every rank's line printed here, by the one process: lines that each rank wrote to
        # the launcher's shared stdout were sometimes lost
        for rank, (_, their_stats, their_time) in enumerate(everyone[1:], start=1):
            print(f"rank {rank}/{ranks.world}: " + _summary(their_stats, their_time, args.out,
                                                             codec.codec_id))
        print(_summary(total, took, args.out, codec.codec_id), flush=True)
    ranks.close()
    return 0


def _summary(stats: Stats, took: float, out: Path, codec_id: str) -> str:
    rates = []
    if stats.separate_time > 0:
        rates.append(f"separation {speed(stats.separate_seconds, stats.separate_time)} real time")
    if stats.encode_time > 0:
        rates.append(f"encoding {speed(stats.encode_seconds, stats.encode_time)} real time")
    flagged = ", ".join(f"{n} {FLAG_NAMES.get(flag, flag)}"
                        for flag, n in sorted(stats.flagged.items()))
    return (
        f"prepared {stats.done} songs, {stats.cached} already cached, {len(stats.skipped)} skipped; "
        + (f"flagged: {flagged}; " if flagged else "")
        + f"{stats.seconds:.1f} s of audio encoded in {took:.1f} s"
        + (f" ({', '.join(rates)})" if rates else "")
        + f"; cache: {shown(out)} (codec {codec_id})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
