"""The token cache on disk: one shard per song plus a manifest.

    CACHE_DIR/
      cache.json               codec info and slot names, fixed when the cache is created
      songs/<id>.npy           codes [K, Q, T] int16 (int32 if card > 32767), memory-mappable
      songs/<id>.mix.npy       codes [1, Q, T] of the mixed audio (for the `mode: mix` baseline)
      songs/<id>.json          the song's entry (with each slot's instrument object, where
                               known); written last, so it marks the song done
      manifest.json            all entries of the last complete run, read by training

Every file is written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..files import temporary_beside
from ..objects import UNKNOWN
from .layout import piece_key

FORMAT_VERSION = 1


class CacheError(UserError):
    pass


@dataclass
class SongEntry:
    """What the cache knows of one song: `songs/<id>.json` and one value of the manifest."""

    id: str
    source: str  # the song's path under SONGS_DIR (a stem folder or an audio file)
    kind: str  # "stems" | "mix" (separated) | "single" (one stem, --instrument)
    files: dict[str, dict[str, Any]]  # path under SONGS_DIR -> role, size, mtime_ns, sha256
    codec_id: str
    separator: str | None  # the Demucs model of a separated song
    frames: int
    seconds: float
    present: list[bool]  # per cache slot
    silent: list[bool]
    shard: str  # codes [K, Q, T], relative to the cache folder
    mix_shard: str | None = None  # codes [1, Q, T] of the mix; None when prepared --no-mix
    # what is odd about its files: flag (silent, dead_channel, dc_offset, unreadable) ->
    # "<file>: <what was measured>" lines; empty when nothing is (and in older entries)
    flags: dict[str, list[str]] = field(default_factory=dict)
    # per cache slot the instrument object playing it (stemcodec.objects names, from a
    # rendered piece's meta.json); None (older entries, separated songs): unknown everywhere
    objects: list[str] | None = None

    @property
    def key(self) -> str:
        """The piece key (layout.piece_key): the song's side of the train/valid split."""
        return piece_key(self.source or self.id)

    def object_names(self, slots: int) -> list[str]:
        """The object of each of the `slots` cache slots, `unknown` where none is known."""
        names = list(self.objects or [])[:slots]
        return [n if isinstance(n, str) else UNKNOWN for n in names] + \
            [UNKNOWN] * (slots - len(names))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> SongEntry:
        """An entry from its JSON; ValueError if it is not one (written by another version)."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict):
            raise ValueError("not an object")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:  # a field missing
            raise ValueError(str(exc)) from None


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def write_codes(path: Path, codes: np.ndarray) -> None:
    """Save integer codes as .npy atomically, in the smallest dtype that holds them."""
    dtype = np.int16 if codes.size == 0 or int(codes.max()) <= np.iinfo(np.int16).max else np.int32
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, codes.astype(dtype, copy=False), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TokenCache:
    """Read side of a cache directory (what training and evaluation use)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise CacheError(
                f"{self.root} is not a token cache (no manifest.json); "
                f"make one with `python -m stemcodec.prepare SONGS_DIR --out {self.root}`"
            )
        try:
            data = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CacheError(f"{manifest} is corrupt; rerun prepare to rebuild it") from None
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise CacheError(f"{manifest} has an unknown format (expected version {FORMAT_VERSION})")
        try:
            self.codec: dict[str, Any] = data["codec"]
            self.slots: list[str] = list(data["slots"])
            self.songs: dict[str, SongEntry] = {
                sid: SongEntry.from_json(entry) for sid, entry in data["songs"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise CacheError(f"{manifest} is corrupt; rerun prepare to rebuild it") from None

    @property
    def codec_id(self) -> str:
        return self.codec["id"]

    def codes(self, song_id: str) -> np.ndarray:
        """codes [K, Q, T] of one song, memory-mapped (read-only)."""
        return self._load(self.songs[song_id].shard)

    def mix_codes(self, song_id: str) -> np.ndarray | None:
        shard = self.songs[song_id].mix_shard
        return None if shard is None else self._load(shard)

    def _load(self, rel: str) -> np.ndarray:
        path = self.root / rel
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CacheError(f"shard {path} is unreadable ({exc}); rerun prepare") from None
