"""Instrument vocabulary, slot presets and the `--slots` grammar.

`--slots` accepts `PRESET`, `PRESET:N` (the first N instruments of a preset) or an
explicit comma-separated list such as `drums,bass,piano`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import UserError

# The six Demucs 6-stem sources, in the order htdemucs_6s reports them.
DEFAULT_VOCABULARY: tuple[str, ...] = ("drums", "bass", "other", "vocals", "guitar", "piano")

PRESETS: dict[str, tuple[str, ...]] = {
    "full": DEFAULT_VOCABULARY,
    "vocals-free": ("drums", "bass", "guitar", "piano", "other"),
    "solo-piano": ("piano",),
    "band": ("drums", "bass", "guitar", "vocals"),
    "demucs-4": ("drums", "bass", "other", "vocals"),
}


class SlotError(UserError):
    """A bad `--slots` value or an instrument a model does not know."""


@dataclass(frozen=True)
class SlotSpec:
    """An ordered list of instrument slots, one token stream each."""

    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def ids(self, vocabulary: Sequence[str] = DEFAULT_VOCABULARY) -> list[int]:
        """Indices of the slots' instruments in `vocabulary`."""
        check_instruments(self.names, vocabulary)
        return [list(vocabulary).index(name) for name in self.names]

    def __str__(self) -> str:
        return ",".join(self.names)


def check_instruments(names: Sequence[str], vocabulary: Sequence[str], what: str = "the model") -> None:
    """Raise a one-line SlotError if any name is not in `vocabulary`."""
    unknown = [n for n in names if n not in vocabulary]
    if unknown:
        raise SlotError(
            f"{what} does not know instrument(s) {', '.join(unknown)}; "
            f"valid instruments: {', '.join(vocabulary)}"
        )


def parse_slots(
    text: str,
    vocabulary: Sequence[str] = DEFAULT_VOCABULARY,
    max_slots: int | None = None,
) -> SlotSpec:
    """Parse a `--slots` value into a SlotSpec, checked against `vocabulary` and `max_slots`."""
    text = (text or "").strip()
    if not text:
        raise SlotError(_usage("empty --slots value"))
    if "," not in text and (text.split(":", 1)[0] in PRESETS or ":" in text):
        preset, _, count = text.partition(":")
        if preset not in PRESETS:
            raise SlotError(_usage(f"unknown preset '{preset}'"))
        names = PRESETS[preset]
        if count:
            if not count.isdigit() or int(count) < 1:
                raise SlotError(f"--slots {text}: N must be a positive integer, e.g. {preset}:2")
            if int(count) > len(names):
                raise SlotError(
                    f"--slots {text}: preset '{preset}' has only {len(names)} instruments "
                    f"({', '.join(names)})"
                )
            names = names[: int(count)]
    else:
        names = tuple(n.strip() for n in text.split(","))
        if any(not n for n in names):
            raise SlotError(_usage(f"empty name in '{text}'"))
        unknown = [n for n in names if n not in vocabulary]
        if unknown:
            raise SlotError(
                f"unknown instrument or preset '{unknown[0]}'; instruments: {', '.join(vocabulary)}; "
                f"presets: {', '.join(PRESETS)}"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SlotError(f"--slots {text}: instrument(s) repeated: {', '.join(duplicates)}")
    check_instruments(names, vocabulary)
    if max_slots is not None and len(names) > max_slots:
        raise SlotError(f"--slots {text}: {len(names)} slots asked, the model allows at most {max_slots}")
    return SlotSpec(tuple(names))


def _usage(reason: str) -> str:
    return (
        f"{reason}; use PRESET[:N] or a list like drums,bass,piano "
        f"(presets: {', '.join(PRESETS)})"
    )
