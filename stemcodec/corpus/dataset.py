"""Training windows from a token cache: `codes[K, Q, T]` + instrument ids + slot masks.

Each item is one window of `window` frames from one song. Pieces (never windows, never single
songs) are split into train and validation by a hash of their piece key (layout.py): every
variant and part of a tune lands on one side, the same side every run and in every trainer.
Per item, deterministic for (seed, epoch, index):
  * slot dropout: keep all present slots, or a random subset of 1..K of them;
  * given slots: some kept slots are marked given (teacher-forced, no loss), so one model
    learns full generation, fewer slots, accompaniment and continuation;
  * instrument objects (read by models with `model.objects`): each slot's object id (the GM
    program or kit the corpus labelled its stem with; 0 = unknown) and a reference clip of
    `reference_frames` frames cut from another part of the same stem, never overlapping the
    window, so it tells the timbre and not the notes; in training either is dropped with
    `object_dropout` / `reference_dropout`, so the model also learns without them. These
    draws come from a generator of their own: the windows and slots are what they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from ..objects import UNKNOWN_ID, object_id, object_name
from .cache import TokenCache
from .layout import piece_key, split_by_piece


@dataclass
class DataConfig:
    """How windows are cut and slots are sampled (the `data:` section of a training config)."""

    cache: str = "cache"
    window: int = 500  # frames per training window (500 = 6.7 s at 75 frames/s)
    valid_fraction: float = 0.1  # share of pieces (tunes, with their variants) held out
    silent: Literal["drop", "keep"] = "drop"  # drop: a silent stem counts as absent
    p_all_slots: float = 0.5  # chance to keep every present slot (else a random subset)
    p_given: float = 0.25  # chance that some kept slots are given (teacher-forced)
    # instrument objects (only models with model.objects read them; docs/objects.md)
    reference_frames: int = 150  # frames of a slot's reference clip (2 s at 75 frames/s)
    object_dropout: float = 0.5  # chance in training that a slot's object id is hidden
    reference_dropout: float = 0.5  # chance in training that a slot's reference is hidden
    num_workers: int = 0


def split_songs(song_ids: Sequence[str], valid_fraction: float) -> dict[str, list[str]]:
    """Song ids of each split, sorted; the songs of one piece on one side. A cache of two
    pieces or more always gets one validation piece."""
    return split_by_piece(sorted(song_ids), valid_fraction, piece_key)


class WindowDataset(Dataset):
    """Windows of a token cache for one split.

    Args:
        cache: the token cache (or its folder).
        vocabulary: the model's instrument names; slot names of the cache map into it.
        config: window size and slot sampling.
        split: "train" (random crops, slot dropout) or "valid" (fixed windows, all slots).
        seed: base seed; items depend only on (seed, epoch, index).
        mode: "stems" (one stream per slot) or "mix" (one stream of the mix tokens).
    """

    def __init__(self, cache: TokenCache | str, vocabulary: Sequence[str], config: DataConfig,
                 split: Literal["train", "valid"] = "train", seed: int = 0,
                 mode: Literal["stems", "mix"] = "stems"):
        self.cache = cache if isinstance(cache, TokenCache) else TokenCache(cache)
        self.config = config
        self.split = split
        self.seed = seed
        self.mode = mode
        self.epoch = 0
        self.window = config.window
        if mode == "mix":
            self.instrument = np.zeros(1, dtype=np.int64)
        else:
            unknown = [s for s in self.cache.slots if s not in vocabulary]
            if unknown:
                raise UserError(
                    f"the cache has slot(s) {', '.join(unknown)} that the model vocabulary "
                    f"({', '.join(vocabulary)}) lacks; set model.vocabulary or prepare with --slots"
                )
            self.instrument = np.array([list(vocabulary).index(s) for s in self.cache.slots])
        songs = self.cache.songs
        # keyed by the song's source path, which (unlike its id) is never cut short
        chosen = split_by_piece(sorted(songs), config.valid_fraction,
                                lambda s: songs[s].key)[split]
        if mode == "mix":
            chosen = [s for s in chosen if songs[s].mix_shard]
        self.songs = chosen
        K = len(self.instrument)
        # each song's object id per slot (the mix stream has none)
        self.objects = {song: np.array([UNKNOWN_ID] * K if mode == "mix" else
                                       [object_id(n) for n in songs[song].object_names(K)],
                                       dtype=np.int64) for song in chosen}
        # (song, start) windows; train windows overlap by half and get a random shift
        self.items: list[tuple[str, int]] = []
        hop = self.window if split == "valid" else max(1, self.window // 2)
        for song in self.songs:
            frames = self.cache.songs[song].frames
            starts = range(0, max(frames - self.window, 0) + 1, hop)
            self.items.extend((song, s) for s in starts)

    def __len__(self) -> int:
        return len(self.items)

    def object_names(self) -> dict[str, list[str]]:
        """{cache slot: the objects its present stems are labelled with in this split}, in
        id order, unknown left out: what a model trained on it can be asked to play."""
        if self.mode == "mix":
            return {}
        out: dict[str, list[str]] = {}
        for k, slot in enumerate(self.cache.slots):
            ids = {int(self.objects[song][k]) for song in self.songs
                   if self.cache.songs[song].present[k]} - {UNKNOWN_ID}
            if ids:
                out[slot] = [object_name(i) for i in sorted(ids)]
        return out

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """Item `index`, or `(epoch, index)` from a sampler that tracks epochs itself."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        song, start = self.items[index]
        entry = self.cache.songs[song]
        rng = np.random.default_rng([self.seed, epoch if self.split == "train" else 0, index])
        frames = entry.frames
        if self.split == "train":
            start = min(start + int(rng.integers(0, max(1, self.window // 2))),
                        max(frames - self.window, 0))
        stop = min(start + self.window, frames)
        if self.mode == "mix":
            source = self.cache.mix_codes(song)
            present = np.ones(1, dtype=bool)
        else:
            source = self.cache.codes(song)
            present = np.array(entry.present, dtype=bool)
            if self.config.silent == "drop":
                present &= ~np.array(entry.silent, dtype=bool)
            if not present.any():  # an all-silent song still trains something
                present = np.array(entry.present, dtype=bool)
        K, Q = source.shape[0], source.shape[1]
        codes = np.zeros((K, Q, self.window), dtype=np.int64)
        codes[:, :, : stop - start] = source[:, :, start:stop]
        valid = np.zeros(self.window, dtype=bool)
        valid[: stop - start] = True
        given = np.zeros(K, dtype=bool)
        if self.split == "train" and self.mode == "stems":
            present, given = self._sample_slots(present, rng)
        # a generator of its own, so the draws above are those of a dataset without objects
        object_rng = np.random.default_rng([self.seed, epoch if self.split == "train" else 0,
                                            index, 1])
        objects = np.where(present, self.objects[song], UNKNOWN_ID)
        reference, reference_mask = self._references(source, start, stop, present, object_rng)
        if self.split == "train":
            objects[object_rng.random(K) < self.config.object_dropout] = UNKNOWN_ID
            reference_mask[object_rng.random(K) < self.config.reference_dropout] = False
        return {
            "codes": torch.from_numpy(codes),
            "instrument": torch.from_numpy(self.instrument.copy()),
            "present": torch.from_numpy(present),
            "given": torch.from_numpy(given),
            "valid": torch.from_numpy(valid),
            "object": torch.from_numpy(objects),
            "reference": torch.from_numpy(reference),
            "reference_mask": torch.from_numpy(reference_mask),
        }

    def _references(self, source: np.ndarray, start: int, stop: int, present: np.ndarray,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(codes [K, Q, R], mask [K, R]): per present slot a clip of its stem outside the
        window [start, stop): R frames where the song has room, else the longer stretch
        before or after the window if it holds at least R / 4 frames, else none (mask all
        False). Every slot of a song is cut at the same place."""
        K, Q, frames = source.shape
        R = max(1, self.config.reference_frames)
        reference = np.zeros((K, Q, R), dtype=np.int64)
        mask = np.zeros((K, R), dtype=bool)
        if self.config.reference_frames < 1:
            return reference, mask
        # starts whose clip [r, r + R) stays clear of the window
        before, after = max(0, start - R + 1), max(0, frames - R - stop + 1)
        if before + after > 0:
            pick = int(rng.integers(before + after))
            r, length = (pick, R) if pick < before else (stop + pick - before, R)
        else:  # too short for a whole clip: the longer stretch outside the window
            r, length = (0, start) if start >= frames - stop else (stop, frames - stop)
            if length < max(1, R // 4):
                return reference, mask
        reference[:, :, :length] = source[:, :, r:r + length]
        mask[:, :length] = present[:, None]
        return reference, mask

    def _sample_slots(self, present: np.ndarray, rng: np.random.Generator):
        idx = np.flatnonzero(present)
        keep = idx
        if len(idx) > 1 and rng.random() >= self.config.p_all_slots:
            keep = rng.choice(idx, size=int(rng.integers(1, len(idx) + 1)), replace=False)
        kept = np.zeros_like(present)
        kept[keep] = True
        given = np.zeros_like(present)
        if len(keep) > 1 and rng.random() < self.config.p_given:
            n_given = int(rng.integers(1, len(keep)))  # at least one slot left to predict
            given[rng.choice(keep, size=n_given, replace=False)] = True
        return kept, given
