"""The corpus layout, read in one place: pieces, their key, and the train/valid split.

    CORPUS/<piece-id>/<slot>.wav   one stem per slot (any audio extension; slot: an instrument)
                      mix.wav      optional: the mixed audio
                      meta.json    optional: what render records about the piece

Hidden folders (`.<piece-id>.tmp`, unfinished renders) are never read.

Piece ids are made here too: `[<recipe>_]<name>[~N]_v<variant>`, where `~N` tells apart
sources of the same name and `_v<variant>` the versions of one source. The *piece key* drops
all of that (and the corpus folder, and prepare's `-<hash>` of a cache song id), so every
version, part and recipe of one tune shares a key, and so a side of the split: no validation
tune is ever heard in training, whether read from a corpus or from a token cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..audio import AUDIO_EXTENSIONS, is_audio_path
from ..errors import UserError
from ..slots import DEFAULT_VOCABULARY
from .recipes import RECIPES

T = TypeVar("T")

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # what render replaces by "_" in a source's name
ID_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")  # and prepare in a song id: "~N" survives
PREPARE_HASH = re.compile(r"-[0-9a-f]{8}$")  # prepare.song_id's suffix
VARIANT = re.compile(r"_v\d+$")
PART = re.compile(r"~\d+$")
RECIPE_PREFIX = re.compile(r"^(?:" + "|".join(map(re.escape, RECIPES)) + r")_")
# file names that say what a file holds, not which song it is: the key is then its folder's
GENERIC = {*(n.lower() for n in DEFAULT_VOCABULARY), "mix", "mixture"}
AUDIO_SUFFIX = re.compile("(?:" + "|".join(map(re.escape, AUDIO_EXTENSIONS)) + r")$", re.I)


@dataclass(frozen=True)
class Piece:
    """One piece folder: its stems by slot, its mix and its meta.json (empty when absent)."""

    folder: Path
    stems: dict[str, Path]  # slot -> audio file, in file-name order
    mix: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:  # usable as a dict key, as its folder was
        return hash(self.folder)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def key(self) -> str:
        return piece_key(self.folder.name)


# -- making and reading piece ids ------------------------------------------------------------
def piece_base(name: str, recipe: str | None, taken: set[str]) -> str:
    """`[<recipe>_]<name>`, made safe for a folder name; `~N` when a source of the same name
    came first. Adds the result to `taken`."""
    base = UNSAFE.sub("_", f"{recipe}_{name}" if recipe else name).strip("._")[:100] or "piece"
    first, n = base, 1
    while base in taken:  # same folder and file names from different places
        n += 1
        base = f"{first}~{n}"
    taken.add(base)
    return base


def variant_id(base: str, variant: int) -> str:
    return f"{base}_v{variant}"


def song_id(rel: Path) -> str:
    """prepare's id of the song at `rel` (a path under SONGS_DIR): readable, collision-free
    (sanitised path, its last 80 characters, + a short hash of the whole path)."""
    text = rel.as_posix()
    slug = ID_UNSAFE.sub("_", text.replace("/", "--"))[-80:].lstrip(".")
    # any name the file system allows: bytes that are not UTF-8 arrive as surrogates
    # (os.fsdecode), and hash as the bytes they were
    raw = text.encode("utf-8", "surrogateescape")
    return f"{slug}-{hashlib.sha1(raw).hexdigest()[:8]}"


def piece_key(name: str) -> str:
    """The tune a piece folder name, a cache song id or a source path stands for.

    `folk-band_essenFolksong_han1_0003_v2`, `solo-piano_essenFolksong_han1_0003~2_v0` and
    the cache id `corpora--folk-band_essenFolksong_han1_0003_v0-1a2b3c4d` all give
    `essenFolksong_han1_0003`; a separated song `album/track.mp3` gives `track`, and one whose
    file is named for what it holds (`title/mix.wav`, `title/piano.wav`) gives `title`.
    """
    parts = re.split(r"/|--", name.rstrip("/"))
    last = parts[-1]
    if len(parts) > 1 and AUDIO_SUFFIX.sub("", PREPARE_HASH.sub("", last)).lower() in GENERIC:
        last = parts[-2]  # `title/mix.wav`, `piece/piano.wav`: the folder names the song
    key = ID_UNSAFE.sub("_", PREPARE_HASH.sub("", last))
    key = PART.sub("", VARIANT.sub("", AUDIO_SUFFIX.sub("", key)))
    return RECIPE_PREFIX.sub("", key) or key or name


# -- the split -------------------------------------------------------------------------------
def _share(key: str) -> float:
    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def split_of(key: str, fraction: float) -> Literal["train", "valid"]:
    """The side of a piece key: stable whatever other pieces there are."""
    return "valid" if _share(key) < fraction else "train"


def split_by_piece(items: Iterable[T], fraction: float,
                   key: Callable[[T], str]) -> dict[str, list[T]]:
    """Items of each side, in their order; all items of one piece key on one side. With two
    keys or more and `fraction > 0`, validation gets at least one key."""
    items = list(items)
    keys = {key(item) for item in items}
    valid = {k for k in keys if split_of(k, fraction) == "valid"}
    if not valid and fraction > 0 and len(keys) >= 2:
        valid = {min(keys, key=_share)}  # the key nearest to the validation side
    return {"train": [i for i in items if key(i) not in valid],
            "valid": [i for i in items if key(i) in valid]}


def split_pieces(pieces: Sequence[Piece], fraction: float) -> dict[str, list[Piece]]:
    """`{"train": [...], "valid": [...]}`: every variant and part of a tune on one side."""
    return split_by_piece(pieces, fraction, lambda p: p.key)


# -- reading a corpus ------------------------------------------------------------------------
def folders(root: Path) -> list[Path]:
    """`root` and every folder under it, sorted; hidden ones and what lies in them left out."""
    found, seen = [], set()
    # linked folders are followed (a corpus put together from links), each real one once
    for here, subdirs, _ in os.walk(root, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        found.append(Path(here))
    return sorted(found)


def read_piece(folder: Path, names: Iterable[str] | None = DEFAULT_VOCABULARY) -> Piece | None:
    """The piece in `folder`, or None when it holds no stem named by one of `names` (None:
    any audio file but the mix is a stem)."""
    names = set(names) if names is not None else None
    stems: dict[str, Path] = {}
    mix = None
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not is_audio_path(path) or not path.is_file():
            continue
        if path.stem != "mix" and (names is None or path.stem in names):
            stems.setdefault(path.stem, path)
        elif path.stem == "mix" and mix is None:
            mix = path
    if not stems:
        return None
    return Piece(folder, stems, mix, _read_meta(folder / "meta.json"))


def find_pieces(corpora: Sequence[str | os.PathLike],
                names: Iterable[str] | None = DEFAULT_VOCABULARY) -> list[Piece]:
    """Every piece under the corpus folders: corpus by corpus in the order given, pieces
    sorted by folder. A missing folder, or one without any piece, is a one-line UserError."""
    names = tuple(names) if names is not None else None
    pieces: list[Piece] = []
    for corpus in corpora:
        root = Path(corpus)
        if not root.is_dir():
            raise UserError(f"{root} is not a folder; render a corpus with "
                            f"`python -m stemcodec.render --recipe folk-band --out {root}`")
        found = [p for f in folders(root) if (p := read_piece(f, names)) is not None]
        if not found:
            raise UserError(f"no .wav stems under {root} (expected <piece>/<slot>.wav, slot one "
                            f"of {', '.join(names or ['any'])}, as `python -m stemcodec.render` "
                            "writes)")
        pieces += found
    return pieces


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):  # absent or damaged: the stems are still good
        return {}
    return meta if isinstance(meta, dict) else {}
