"""Temporary files that become a user's files: written beside their target and renamed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_beside(path: str | os.PathLike, suffix: str = ".tmp") -> tuple[int, str]:
    """`tempfile.mkstemp` in `path`'s folder, with the permissions a plain `open()` would
    give (0666 less the umask), not mkstemp's 0600: renamed into place, it is an ordinary file
    that others may read (a shared cache, a bundled model)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    return fd, tmp


def speed(seconds: float, took: float) -> str:
    """`12x`, `2.4x`, `0.31x` real time: two significant figures, never `0x` for a slow run."""
    ratio = seconds / took if took > 0 else float("inf")
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.2g}x"
