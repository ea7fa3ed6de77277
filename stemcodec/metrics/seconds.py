"""Cut a stem into whole seconds and say which of them are silent.

Per-second metrics (timbre stability, identity, switch rate) look only at *active* seconds:
a second is silent when `stemcodec.audio.is_silent` says so (below -60 dBFS RMS), or when it
lies more than `relative_db` (25 dB) below the median level of its seconds above -60 dBFS: the
release tail after the last note, a breath of reverb, nothing a listener would name an
instrument by (a rendered nylon guitar's tail second sits 26 dB under its notes and sounds
like a soft pad).
"""

from __future__ import annotations

import torch

from ..audio import SILENCE_DB, is_silent, rms_db
from .spectra import mono

RELATIVE_DB = 25.0


def split_seconds(wav: torch.Tensor, rate: int, seconds: float = 1.0) -> torch.Tensor:
    """`[C, S]` -> `[N, L]` mono segments of `seconds` each (L = seconds * rate).

    A last partial segment is kept, zero-padded, when it holds at least half a segment.
    """
    x = mono(wav)
    length = int(round(seconds * rate))
    count = x.shape[-1] // length
    if x.shape[-1] - count * length >= length / 2:
        count += 1
        x = torch.nn.functional.pad(x, (0, count * length - x.shape[-1]))
    return x[: count * length].reshape(count, length)  # [N, L]


def active_seconds(segments: torch.Tensor, threshold_db: float = SILENCE_DB,
                   relative_db: float = RELATIVE_DB) -> torch.Tensor:
    """Bool mask `[N]` of the segments `[N, L]` that are not silent (see the module doc)."""
    if segments.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    levels = torch.tensor([rms_db(s) for s in segments])
    loud = torch.tensor([not is_silent(s, threshold_db) for s in segments], dtype=torch.bool)
    if not loud.any():
        return loud
    return loud & (levels >= levels[loud].median() - relative_db)
