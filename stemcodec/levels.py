"""Level checks of a decoded file, per channel, before any downmix hides them.

A stereo file with one dead channel (a broken cable, a bad rip) is averaged to mono at half
its level; a DC offset (a faulty converter) wastes the codec's range and clicks where a
window starts. Neither stops a file from being used, so they are flags, not errors.
"""

from __future__ import annotations

import numpy as np

from .audio import SILENCE_DB

# A channel this far below the loudest one is dead: beyond what panning leaves on the
# far side of a mix, yet a hard-panned stem is still reported (it is one-sided).
DEAD_BELOW_DB = 40.0
# |mean| of every second of a channel (-40 dBFS). Music averages ~1e-4 over a second; a
# fraction of a low note's cycle does not (a 20 ms file of 220 Hz averages 0.02), so files
# under a second are not judged, and an offset must hold in every second.
DC_OFFSET = 0.01


def level_flags(data: np.ndarray, rate: int) -> dict[str, str]:
    """Flags of a decoded `[S, C]` file: `silent`, `dead_channel` (stereo), `dc_offset`,
    each with what was measured. Levels are of the signal less its mean, so a dead channel
    with an offset is still dead."""
    meter = LevelMeter(rate, data.shape[1])
    meter.add(data)
    return meter.flags()


class LevelMeter:
    """level_flags of a file read block by block: blocks `[n, C]` in, flags at the end.
    Sums are taken per whole second (float64, one second at a time), as over the whole file."""

    def __init__(self, rate: int, channels: int):
        self.rate = rate
        self.frames = 0
        self.total = np.zeros(channels)
        self.squares = np.zeros(channels)
        self.means: list[np.ndarray] = []  # per whole second
        self._part = np.zeros((0, channels), np.float32)  # the second under way

    def add(self, block: np.ndarray) -> None:
        data = np.concatenate([self._part, block]) if len(self._part) else block
        whole = len(data) - len(data) % self.rate
        for start in range(0, whole, self.rate):
            self._second(data[start:start + self.rate])
        self._part = data[whole:].copy()

    def _second(self, block: np.ndarray) -> None:
        block = block.astype(np.float64)
        self.frames += len(block)
        self.total += block.sum(axis=0)
        self.squares += np.square(block).sum(axis=0)
        if len(block) == self.rate:
            self.means.append(block.mean(axis=0))

    def flags(self) -> dict[str, str]:
        if len(self._part):  # the last part of a second
            self._second(self._part)
            self._part = self._part[:0]
        frames, channels = self.frames, len(self.total)
        mean = self.total / max(frames, 1)
        ac = np.sqrt(np.maximum(self.squares / max(frames, 1) - mean**2, 0.0))
        level = 20 * np.log10(np.maximum(ac, 1e-10))
        loudest = float(level.max())
        flags: dict[str, str] = {}
        if loudest < SILENCE_DB and np.abs(mean).max() < DC_OFFSET:
            flags["silent"] = f"silent (below {SILENCE_DB:.0f} dBFS)"
        # surround files often carry empty channels (LFE, rears) on purpose: stereo only
        if channels == 2 and loudest >= SILENCE_DB:
            dead = [c for c in range(2) if level[c] < max(SILENCE_DB, loudest - DEAD_BELOW_DB)]
            if dead:
                c = dead[0]
                flags["dead_channel"] = (f"{('left', 'right')[c]} channel dead "
                                         f"({_db(level[c])}, the other {loudest:.0f} dBFS)")
        seconds = np.array(self.means).reshape(-1, channels)
        offset = [c for c in range(channels) if len(seconds)
                  and (np.all(seconds[:, c] >= DC_OFFSET) or np.all(seconds[:, c] <= -DC_OFFSET))]
        if offset:
            flags["dc_offset"] = "DC offset " + ", ".join(
                f"{mean[c]:+.3f}" + (f" on channel {c + 1}" if channels > 1 else "")
                for c in offset)
        return flags


def _db(value: float) -> str:
    return "no signal" if value <= -199 else f"{value:.0f} dBFS"
