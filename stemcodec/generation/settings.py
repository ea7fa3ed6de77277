"""What one generation is asked for, checked before any model is loaded; one line per mistake.

The messages name the CLI's flags (`--duration`, `--top-k` ...): the CLI passes its arguments
through unchanged, and a Python caller reads the keyword of the same name.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError

PathLike = str | os.PathLike
Pairs = Mapping[str, PathLike] | Sequence[str]  # {slot: file} or the CLI's ["SLOT=FILE", ...]


@dataclass
class Settings:
    """The keywords of `StemGenerator.generate` (and of the CLI's flags), seeds aside.

    temperature, top_k and top_p take one value, one per codebook (a sequence), or the CLI's
    text ("1,0.9,0.8,0.8"); `check` turns them into numbers.
    """

    slots: str = "vocals-free:4"
    duration: float = 10.0
    given: Pairs = field(default_factory=dict)
    prompt: Pairs = field(default_factory=dict)
    given_mix: PathLike | None = None
    keep: str | Sequence[str] | None = None
    temperature: float | Sequence[float] | str = 1.0
    top_k: int | Sequence[int] | str = 250
    top_p: float | Sequence[float] | str = 0.0
    cfg: float = 1.0
    window: float | None = None
    context: float | None = None
    separator: Any = "htdemucs_6s"  # a name, or a loaded stemcodec.separate.Separator
    demucs_repo: PathLike | None = None
    # instrument objects (a model with model.objects): {slot: name} or "slot=name,..."
    instrument: Mapping[str, str] | Sequence[str] | str | None = None
    timbre: Pairs = field(default_factory=dict)  # {slot: reference clip}

    def check(self) -> None:
        """Numbers in range and options that go together; sampling values become numbers."""
        if not _is_number(self.duration) or not self.duration > 0:
            raise UserError(f"--duration {self.duration}: must be a positive number of seconds")
        self.temperature = per_codebook(self.temperature, "--temperature", float,
                                        lambda v: v >= 0, "0 (greedy) or more")
        self.top_k = per_codebook(self.top_k, "--top-k", int, lambda v: v >= 0, "0 (off) or more")
        self.top_p = per_codebook(self.top_p, "--top-p", float, lambda v: 0 <= v <= 1,
                                  "between 0 and 1")
        if not _is_number(self.cfg) or not self.cfg > 0:
            raise UserError(f"--cfg {self.cfg}: must be positive (1 = off)")
        for name in ("window", "context"):
            value = getattr(self, name)
            if value is not None and (not _is_number(value) or not value > 0):
                raise UserError(f"--{name} {value}: must be a positive number of seconds")
        if self.keep is not None and self.given_mix is None:
            raise UserError("--keep chooses stems of --given-mix; add --given-mix FILE")

    def check_codebooks(self, codebooks: int) -> None:
        for flag, value in (("--temperature", self.temperature), ("--top-k", self.top_k),
                            ("--top-p", self.top_p)):
            if isinstance(value, list) and len(value) != codebooks:
                raise UserError(f"{flag}: {len(value)} values, but this model has {codebooks} "
                                "codebooks; give one value or one per codebook")

    def pairs(self, name: str) -> list[str]:
        """`given`, `prompt` or `timbre` as the CLI's SLOT=FILE items (what
        conditions.parse_pairs reads)."""
        value = getattr(self, name) or {}
        if isinstance(value, Mapping):
            return [f"{slot}={path}" for slot, path in value.items()]
        return [str(item) for item in value]

    @property
    def keep_text(self) -> str | None:
        if self.keep is None or isinstance(self.keep, str):
            return self.keep
        return ",".join(self.keep)

    def arguments(self) -> dict[str, Any]:
        """The settings as JSON values, for meta.json."""
        out: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name == "separator" and not isinstance(value, str):
                value = getattr(value, "name", str(value))
            elif name in ("given", "prompt", "timbre"):
                value = dict(item.partition("=")[::2] for item in self.pairs(name))
            elif name == "instrument":
                from .objects import instrument_items
                value = dict(item.partition("=")[::2] for item in instrument_items(value))
            elif isinstance(value, os.PathLike):
                value = str(value)
            out[name] = value
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def per_codebook(value: Any, flag: str, kind: type, valid, what: str):
    """`1.0`, `"1.0"` -> 1.0 and `[1, 0.9]`, `"1,0.9"` -> [1.0, 0.9] (one per codebook), each
    checked; `kind` int refuses fractions."""
    items = value.split(",") if isinstance(value, str) else \
        list(value) if hasattr(value, "__len__") else [value]
    text = ",".join(f"{v:g}" if _is_number(v) else str(v).strip() for v in items)
    try:
        numbers = [float(v) for v in items]
        if kind is int:
            if not all(n.is_integer() for n in numbers):
                raise ValueError
            numbers = [int(n) for n in numbers]
    except (TypeError, ValueError):
        raise UserError(f"{flag} {text}: not {'an integer' if kind is int else 'a number'} "
                        "(one value, or one per codebook separated by commas)") from None
    if not numbers or not all(valid(v) for v in numbers):
        raise UserError(f"{flag} {text}: must be {what}")
    return numbers[0] if len(numbers) == 1 else numbers
