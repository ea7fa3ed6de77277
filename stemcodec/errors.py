"""User-facing errors and the CLI wrapper that turns them into one line and exit code 2."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """An error the user can cause and fix: printed as one line, never a traceback."""


class AudioError(UserError):
    """A file that cannot be used as audio (unreadable, empty, NaN samples, too short...)."""


def cli(func: F) -> F:
    """Wrap a CLI `main(argv=None)`: user errors print `error: ...` and exit with code 2."""

    @functools.wraps(func)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        try:
            return func(argv) or 0
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted: finished work is kept; run the same command again to resume",
                  file=sys.stderr)
            return 130

    return wrapper  # type: ignore[return-value]
