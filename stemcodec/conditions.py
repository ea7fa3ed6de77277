"""What a generation is conditioned on: stems given whole (accompaniment), stems separated from
a mix and kept (`--given-mix` + `--keep`), and openings to continue (`--prompt`).

Every source is loaded, encoded with the model's codec and laid out as `codes[K, Q, T]` plus a
`known[K, T]` mask of the frames whose tokens are forced; the sampler fills in the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .audio import load_audio, resample, to_channels
from .errors import AudioError, UserError
from .slots import SlotSpec


@dataclass
class Conditions:
    codes: torch.Tensor  # [K, Q, T] long: the known tokens (zeros elsewhere)
    known: torch.Tensor  # [K, T] bool: frames whose tokens are forced
    sources: dict[str, str] = field(default_factory=dict)  # slot -> where its tokens came from

    @property
    def given_slots(self) -> list[int]:
        """Slots known from the first frame to the last (what guidance can drop)."""
        return [k for k in range(self.known.shape[0]) if bool(self.known[k].all())]

    @property
    def any(self) -> bool:
        return bool(self.known.any())


def parse_pairs(items: Sequence[str], option: str, slots: SlotSpec) -> dict[str, Path]:
    """`SLOT=FILE` arguments -> {slot: path}; a slot may appear once, and only from --slots."""
    pairs: dict[str, Path] = {}
    for item in items:
        slot, sep, file = item.partition("=")
        if not sep or not slot or not file:
            raise UserError(f"{option} {item}: use SLOT=FILE, e.g. drums=my_drums.wav")
        if slot not in slots.names:
            raise UserError(f"{option} {item}: '{slot}' is not among --slots {slots}")
        if slot in pairs:
            raise UserError(f"{option} {slot}= is given twice")
        pairs[slot] = Path(file)
    return pairs


def parse_keep(text: str | None, slots: SlotSpec) -> list[str]:
    """`--keep drums,bass` -> slot names (default: the rhythm section among the slots, or the
    first slot), checked against --slots; at least one slot must be left to generate."""
    if text is None:
        keep = [s for s in ("drums", "bass") if s in slots.names] or [slots.names[0]]
        keep = keep[: max(1, len(slots) - 1)]
    else:
        keep = [s.strip() for s in text.split(",") if s.strip()]
        wrong = [s for s in keep if s not in slots.names]
        if wrong or not keep:
            raise UserError(f"--keep {text}: keep some of --slots {slots} "
                            f"({', '.join(wrong) or 'none named'} not among them)")
    if len(set(keep)) >= len(slots):
        raise UserError(f"--keep {','.join(keep)} keeps every slot, so nothing is left to "
                        "generate; keep fewer or add slots to --slots")
    return keep


def encode_file(codec, path: Path, option: str, frames: int) -> torch.Tensor:
    """Audio file -> codes [Q, <= frames] with the codec; one-line errors name the option."""
    try:
        wav, _ = load_audio(path, codec.sample_rate, codec.channels)
    except AudioError as exc:
        raise UserError(f"{option}: {exc}") from None
    return codec.encode(wav[None])[0][:, :frames].cpu()


def read_conditions(codec, slots: SlotSpec, frames: int, *, given: dict[str, Path] | None = None,
                    prompts: dict[str, Path] | None = None, given_mix: Path | None = None,
                    keep: Sequence[str] = (), separator=None) -> Conditions:
    """Load, separate and encode every conditioning source for `frames` frames of `slots`.

    Given stems shorter than the generation are forced where they play and continued after;
    longer ones are cut. A prompt must leave frames to continue. `separator` (a loaded
    `Separator`) is needed only with `given_mix`.
    """
    given, prompts = given or {}, prompts or {}
    Q = codec.num_codebooks
    codes = torch.zeros(len(slots), Q, frames, dtype=torch.long)
    known = torch.zeros(len(slots), frames, dtype=torch.bool)
    sources: dict[str, str] = {}

    def put(slot: str, tokens: torch.Tensor, source: str) -> None:
        k = slots.names.index(slot)
        if slot in sources:
            raise UserError(f"{slot} is conditioned twice ({sources[slot]} and {source}); "
                            "give each slot one source")
        codes[k, :, : tokens.shape[-1]] = tokens
        known[k, : tokens.shape[-1]] = True
        sources[slot] = source

    for slot, path in given.items():
        put(slot, encode_file(codec, path, f"--given {slot}={path}", frames), f"given {path}")
    for slot, path in prompts.items():
        tokens = encode_file(codec, path, f"--prompt {slot}={path}", frames)
        if tokens.shape[-1] >= frames:
            raise UserError(f"--prompt {slot}={path}: the prompt lasts the whole --duration "
                            f"({frames / codec.frame_rate:g} s); ask for a longer --duration")
        put(slot, tokens, f"prompt {path}")
    if given_mix is not None:
        for slot, stem in separate_mix(separator, given_mix, keep, codec).items():
            stem = stem[:, : frames * codec.hop_length]
            put(slot, codec.encode(stem[None])[0][:, :frames].cpu(),
                f"separated from {given_mix} by {separator.name}")
    return Conditions(codes, known, sources)


def separate_mix(separator, path: Path, keep: Sequence[str], codec) -> dict[str, torch.Tensor]:
    """The kept stems of a mix, separated and brought to the codec's rate and channels."""
    missing = [s for s in keep if s not in separator.sources]
    if missing:
        raise UserError(f"--keep {','.join(keep)}: the separator {separator.name} has no "
                        f"{', '.join(missing)} stem (it gives {', '.join(separator.sources)})")
    try:
        wav, _ = load_audio(path, separator.sample_rate, separator.channels)
    except AudioError as exc:
        raise UserError(f"--given-mix {path}: {exc}") from None
    stems = separator.separate(wav, separator.sample_rate, progress=True)
    out = {}
    for slot in keep:
        stem = resample(stems[slot].cpu(), separator.sample_rate, codec.sample_rate)
        out[slot] = to_channels(stem, codec.channels)
    return out

