"""What the codec trainer learns from: mono segments of rendered stems.

A corpus is `CORPUS/<piece-id>/<slot>.wav` (and mix.wav), as stemcodec.render writes it. A
piece and its variants (`..._v0`, `..._v1`) lie wholly in the training or the validation
split; a segment is a pure function of (seed, index), so any batch can be rebuilt from its
step alone.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..audio import is_silent, resample
from ..codec.tones import random_tones
from ..corpus.layout import find_pieces, piece_key, split_by_piece
from ..errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stem:
    path: str
    piece: str
    samples: int
    rate: int


def scan_corpora(folders: Sequence[str], include_mix: bool, min_samples: int,
                 rate: int) -> list[Stem]:
    """Every stem of every piece under the folders (stemcodec.corpus.layout: `CORPUS/<piece>/
    <slot>.wav`, hidden folders skipped), and mix.wav if asked, sorted by path per corpus."""
    if not folders:
        raise UserError("data.corpora is empty; give rendered corpus folders "
                        "(python -m stemcodec.render --out CORPUS)")
    stems, short = [], 0
    for folder in folders:
        try:
            pieces = find_pieces([folder], names=None)  # any stem name: all audio trains a codec
        except UserError as exc:
            raise UserError(f"data.corpora: {exc}") from None
        paths = sorted((path, piece.name) for piece in pieces
                       for path in [*piece.stems.values(),
                                    *([piece.mix] if include_mix and piece.mix else [])])
        for path, name in paths:
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                logger.warning("skipped %s: not readable as audio (%s)", path, exc)
                continue
            if info.frames * rate // info.samplerate < min_samples:
                short += 1
                continue
            stems.append(Stem(str(path), name, int(info.frames), int(info.samplerate)))
    if not stems:
        raise UserError(f"all {short} stems in {', '.join(folders)} are shorter than one "
                        "segment; lower data.segment_seconds")
    return stems


def split_stems(stems: list[Stem], valid_fraction: float) -> dict[str, list[Stem]]:
    """Stems of each split; a piece (with its variants and parts) lies wholly in one: the
    split of stemcodec.corpus.layout, the same as the generator's."""
    out = split_by_piece(stems, valid_fraction, key=lambda s: piece_key(s.piece))
    if not out["train"]:
        raise UserError(f"no training pieces left after holding out data.valid_fraction="
                        f"{valid_fraction}; add pieces or lower it")
    return out


def read_segment(stem: Stem, start: int, length: int, rate: int) -> torch.Tensor:
    """`length` samples at `rate` from `start` (in the file's own samples): mono `[1, length]`."""
    need = math.ceil(length * stem.rate / rate) if stem.rate != rate else length
    data, _ = sf.read(stem.path, start=start, frames=need, dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.T)).mean(dim=0, keepdim=True)  # [1, s]
    if stem.rate != rate:
        wav = resample(wav, stem.rate, rate)
    return F.pad(wav, (0, max(0, length - wav.shape[-1])))[:, :length]


class SegmentDataset(Dataset):
    """Item i: a random segment, non-silent if one is found in `tries` draws. A pure function
    of (seed, i), so any batch can be rebuilt from its step alone (exact resume, any workers).
    Stems are drawn in proportion to their length; a share `tone_fraction` of the items are
    synthetic harmonic tones instead."""

    def __init__(self, stems: list[Stem], length: int, rate: int, seed: int,
                 silence_db: float, tries: int = 10, tone_fraction: float = 0.0):
        self.stems, self.length, self.rate, self.seed = stems, length, rate, seed
        self.silence_db, self.tries, self.tone_fraction = silence_db, tries, tone_fraction
        spans = np.array([max(1, s.samples - self._need(s) + 1) for s in stems], dtype=np.float64)
        self.cumulative = np.cumsum(spans) / spans.sum()

    def _need(self, stem: Stem) -> int:
        return math.ceil(self.length * stem.rate / self.rate)

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        if self.tone_fraction > 0 and rng.random() < self.tone_fraction:
            return random_tones(rng, self.length, self.rate)
        for _ in range(self.tries):
            i = min(int(np.searchsorted(self.cumulative, rng.random(), side="right")),
                    len(self.stems) - 1)
            stem = self.stems[i]
            start = int(rng.integers(0, max(1, stem.samples - self._need(stem) + 1)))
            wav = read_segment(stem, start, self.length, self.rate)
            if not is_silent(wav, self.silence_db):
                break
        return wav  # [1, S]


def validation_segments(stems: list[Stem], count: int, length: int, rate: int, seed: int,
                        silence_db: float) -> torch.Tensor:
    """A fixed set of `count` held-out non-silent segments [N, 1, S] (the same at every
    evaluation, and drawn apart from the training segments' seed)."""
    if not stems or count <= 0:
        return torch.zeros(0, 1, length)
    data = SegmentDataset(stems, length, rate, seed + 1_000_003, silence_db)
    return torch.stack([data[i] for i in range(count)])
