"""The bundled mini codec across a change of tokens.

`assets/codec-mini` is the newest mini codec (`load_codec("mini")`). Installing a codec with
new tokens would strand the bundled generators trained on the old ones until they are
retrained (a stage of its own on a CPU), so the codec it replaces is kept as
`assets/codec-mini-<hash>` while a bundled generator's config names its tokens, and
`load_codec("mini", codec_id=...)` finds it there. Once no bundled generator uses an earlier
codec it is removed (`prune`, run by every install), and a user's checkpoint on those tokens
gets the usual one-line refusal.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from .. import checkpoint
from .mini import codec_from_config
from .wrapper import Codec

NEWEST = "codec-mini"


def _earlier_folders(assets: Path) -> list[Path]:
    return sorted(p for p in assets.glob(f"{NEWEST}-*") if (p / checkpoint.WEIGHTS).is_file())


def _load(path: Path, bandwidth: float | None = None) -> Codec:
    state, cfg = checkpoint.load_pretrained(path)
    return codec_from_config(cfg, state, "mini", bandwidth)


def earlier(bandwidth: float | None = None) -> Iterator[Codec]:
    """The earlier mini codecs still bundled, loaded one at a time as they are tried."""
    for path in _earlier_folders(checkpoint.ASSETS):
        yield _load(path, bandwidth)


def generator_codec_ids(assets: Path | None = None) -> set[str]:
    """Codec ids the bundled generators were trained on."""
    ids = set()
    for config in sorted((assets or checkpoint.ASSETS).glob("generator-*/config.json")):
        codec = json.loads(config.read_text()).get("codec") or {}
        if codec.get("id"):
            ids.add(codec["id"])
    return ids


def _used(codec: Codec, ids: set[str]) -> bool:
    return any(codec.makes(i) for i in ids)


def prune(assets: Path | None = None) -> list[str]:
    """Remove earlier mini codecs no bundled generator uses; returns the folders removed."""
    assets = assets or checkpoint.ASSETS
    ids, removed = generator_codec_ids(assets), []
    for path in _earlier_folders(assets):
        if not _used(_load(path), ids):
            shutil.rmtree(path)
            removed.append(path.name)
    return removed


def install(run: str | os.PathLike, half: bool = True, assets: Path | None = None) -> Codec:
    """Install a trained codec (a run folder) as the bundled mini codec (float16 with `half`).
    The one it replaces moves to `codec-mini-<hash>` if a bundled generator uses its tokens;
    then earlier ones nobody uses are pruned. Returns the installed codec."""
    assets = assets or checkpoint.ASSETS
    target = assets / NEWEST
    staged = checkpoint.copy_pretrained(run, assets / f".{NEWEST}-staged", half=half)
    new = _load(staged)
    if (target / checkpoint.WEIGHTS).is_file():
        old = _load(target)
        if old.codec_id != new.codec_id and _used(old, generator_codec_ids(assets)):
            keep = assets / f"{NEWEST}-{old.codec_id.rsplit('-', 1)[-1]}"
            shutil.rmtree(keep, ignore_errors=True)
            os.replace(target, keep)
        else:
            shutil.rmtree(target)
    os.replace(staged, target)
    prune(assets)
    return new
