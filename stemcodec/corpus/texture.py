"""`python -m stemcodec.corpus.texture CORPUS [CORPUS ...] [--slot NAME] [--json F]`: how
dense the notes of a rendered corpus are, read from the `<slot>.mid` that render keeps beside
each `<slot>.wav`.

    notes/s    notes per second of music (a stem's music: from 0 to the end of its last note)
    poly       notes sounding at once, averaged over the time at least one sounds
    p95        the polyphony that 95 % of that time stays at or below
    range      lowest and highest pitch of the corpus
    span       a stem's highest pitch minus its lowest, in semitones, averaged over stems

A 4-note chord held 1 s: 4 notes/s, polyphony 4. A scale of 4 notes in 1 s: 4 notes/s,
polyphony 1. Drum tracks are left out (hits, not pitches); several tracks of one stem (a
chorale's four voices on the piano) count together.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..errors import UserError, cli
from ..slots import DEFAULT_VOCABULARY
from .layout import find_pieces

Span = tuple[float, float, int]  # start, end (seconds), pitch


@dataclass
class Texture:
    """Sums over the stems measured so far; the figures are properties."""

    stems: int = 0
    notes: int = 0
    seconds: float = 0.0  # music: from 0 to each stem's last note-off
    sounding: dict[int, float] = field(default_factory=dict)  # polyphony -> seconds at it
    lowest: int | None = None
    highest: int | None = None
    spans: list[int] = field(default_factory=list)

    def add(self, notes: Sequence[Span]) -> None:
        """One stem's notes (zero-length notes are not sounding and not counted)."""
        notes = [n for n in notes if n[1] > n[0]]
        if not notes:
            return
        self.stems += 1
        self.notes += len(notes)
        self.seconds += max(end for _, end, _ in notes)
        for level, seconds in polyphony(notes).items():
            self.sounding[level] = self.sounding.get(level, 0.0) + seconds
        pitches = [p for _, _, p in notes]
        low, high = min(pitches), max(pitches)
        self.lowest = low if self.lowest is None else min(self.lowest, low)
        self.highest = high if self.highest is None else max(self.highest, high)
        self.spans.append(high - low)

    @property
    def notes_per_second(self) -> float:
        return self.notes / self.seconds if self.seconds else 0.0

    @property
    def mean_polyphony(self) -> float:
        total = sum(self.sounding.values())
        return sum(k * t for k, t in self.sounding.items()) / total if total else 0.0

    def polyphony_percentile(self, q: float) -> int:
        """The smallest polyphony that `q` (0-1) of the sounding time stays at or below."""
        total = sum(self.sounding.values())
        below = 0.0
        for level in sorted(self.sounding):
            below += self.sounding[level]
            if below >= q * total - 1e-9:
                return level
        return 0

    def figures(self) -> dict:
        return {
            "stems": self.stems, "notes": self.notes, "seconds": round(self.seconds, 3),
            "notes_per_second": round(self.notes_per_second, 3),
            "mean_polyphony": round(self.mean_polyphony, 3),
            "p95_polyphony": self.polyphony_percentile(0.95),
            "lowest": self.lowest, "highest": self.highest,
            "mean_span": round(sum(self.spans) / len(self.spans), 2) if self.spans else 0.0,
        }


def polyphony(notes: Iterable[Span]) -> dict[int, float]:
    """Seconds spent at each number of notes sounding at once (1 and up): a sweep over
    note-ons and note-offs; a note-off at the very time of a note-on comes first."""
    events = sorted(e for start, end, _ in notes for e in ((start, 1, 1), (end, 0, -1)))
    out: dict[int, float] = {}
    level, last = 0, None
    for time, _, change in events:
        if level > 0 and last is not None and time > last:
            out[level] = out.get(level, 0.0) + (time - last)
        level, last = level + change, time
    return out


def stem_notes(path: Path) -> list[Span]:
    """The pitched notes of a MIDI file, every non-drum track together."""
    import pretty_midi
    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # mido and pretty_midi raise many kinds for a broken file
        raise UserError(f"{path}: not a readable MIDI file ({type(exc).__name__})") from None
    return [(n.start, n.end, n.pitch) for inst in midi.instruments if not inst.is_drum
            for n in inst.notes]


def midi_files(corpus: Path, slots: Sequence[str]) -> list[Path]:
    """`<slot>.mid` beside each stem of the corpus's pieces (one-line error: no pieces, or
    pieces rendered before render kept their MIDI)."""
    pieces = find_pieces([corpus], slots)
    found = [piece.folder / f"{slot}.mid" for piece in pieces for slot in piece.stems]
    found = [p for p in found if p.is_file()]
    if not found:
        raise UserError(f"{corpus}: {len(pieces)} pieces but no <slot>.mid beside their stems "
                        "(render writes them; a corpus rendered before it did has none)")
    return found


def measure(corpus: Path, slots: Sequence[str]) -> Texture:
    texture = Texture()
    for path in tqdm(midi_files(corpus, slots), desc=corpus.name, unit="stem", leave=False,
                     file=sys.stderr, dynamic_ncols=True):
        texture.add(stem_notes(path))
    return texture


def pitch_name(pitch: int | None) -> str:
    if pitch is None:
        return "-"
    import pretty_midi
    return pretty_midi.note_number_to_name(pitch)


def table(rows: dict[str, Texture]) -> str:
    width = max(len("corpus"), *(len(name) for name in rows))
    lines = [f"{'corpus':<{width}}  {'stems':>5}  {'minutes':>7}  {'notes/s':>7}  {'poly':>5}  "
             f"{'p95':>3}  {'range':<9}  {'span':>4}"]
    for name, t in rows.items():
        f, pitches = t.figures(), f"{pitch_name(t.lowest)}-{pitch_name(t.highest)}"
        lines.append(f"{name:<{width}}  {t.stems:>5}  {t.seconds / 60:>7.1f}  "
                     f"{t.notes_per_second:>7.2f}  {t.mean_polyphony:>5.2f}  "
                     f"{f['p95_polyphony']:>3}  {pitches:<9}  {f['mean_span']:>4.0f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m stemcodec.corpus.texture",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Notes per second, polyphony and pitch range of rendered corpora, read "
                    "from the <slot>.mid files render keeps beside the stems.",
        epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("corpora", nargs="+", type=Path, metavar="CORPUS",
                   help="rendered corpus folders (<piece>/<slot>.wav and <slot>.mid)")
    p.add_argument("--slot", action="append", default=None, metavar="NAME",
                   help="only these stems (repeatable; default: every slot)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the figures, per corpus, as JSON")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    slots = tuple(args.slot) if args.slot else DEFAULT_VOCABULARY
    rows = {str(corpus): measure(corpus, slots) for corpus in args.corpora}
    print(table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({k: t.figures() for k, t in rows.items()}, indent=1)
                             + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
