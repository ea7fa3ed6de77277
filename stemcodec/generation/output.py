"""One generated piece: its stems, their mix, what made it, and the files the CLI writes."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..audio import balance, mix
from ..audio import save_audio as _save_audio
from ..errors import UserError

# in an output folder while a stream writes it (sinks.StreamFolder); meta.json comes last
STREAMING_MARK = ".streaming"


def check_replaceable(folder: Path) -> None:
    """Only an earlier generation (it has meta.json) or what an interrupted stream left (its
    mark) is replaced, never other files: UserError otherwise."""
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "meta.json").is_file() \
            and not (folder / STREAMING_MARK).is_file():
        raise UserError(f"{folder} exists and holds files that are not a generation; "
                        "give another output folder")


@dataclass
class GenerationOutput:
    """A generated piece.

    Attributes:
        stems: slot -> [channels, samples] at the levels `save` writes: balanced so no stem
            drowns the others, and adding up to `mix` (empty for a mix-mode model).
        mix: [channels, samples], the stems summed and scaled so it never clips (mix.wav).
        sample_rate: of every tensor here.
        meta: what made it (settings, seed, checkpoint and codec ids, frames, window,
            conditions, the gain each decoded stem got); saved as meta.json.
        codes: [K, Q, frames] the tokens sampled (given ones included).
        decoded: slot -> [channels, samples] as the codec decoded it, before balancing (the
            model's own levels: what evaluation scores).
        timing: seconds the batch took to sample and to decode, wall and CPU (not saved).
    """

    stems: dict[str, torch.Tensor]
    mix: torch.Tensor
    sample_rate: int
    meta: dict[str, Any]
    codes: torch.Tensor
    decoded: dict[str, torch.Tensor]
    timing: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_decoded(cls, decoded: dict[str, torch.Tensor], sample_rate: int,
                     meta: dict[str, Any], codes: torch.Tensor, *, mixed: bool = False,
                     timing: dict[str, float] | None = None) -> GenerationOutput:
        """Balance the decoded stems and mix them; `mixed`: `decoded` is one stream of the
        whole mix (a mix-mode model), kept at its level and only kept from clipping."""
        if mixed:
            (wav,) = decoded.values()
            total, peak_gain = mix([wav])
            return cls({}, total, sample_rate, {**meta, "gains": {"mix": peak_gain}}, codes,
                       decoded, timing or {})
        gains = balance(list(decoded.values()))
        total, peak_gain = mix([wav * g for wav, g in zip(decoded.values(), gains)])
        # the stems as written add up to mix.wav
        stems = {slot: wav * g * peak_gain for (slot, wav), g in zip(decoded.items(), gains)}
        levels = {slot: g * peak_gain for slot, g in zip(decoded, gains)}
        return cls(stems, total, sample_rate, {**meta, "gains": levels}, codes, decoded,
                   timing or {})

    @property
    def seconds(self) -> float:
        return self.mix.shape[-1] / self.sample_rate

    def save(self, folder: str | Path) -> Path:
        """<slot>.wav per stem, mix.wav, stems.png (a spectrogram lane per stem) and meta.json,
        written to a temporary folder renamed into place, so a folder that exists is complete.
        Returns the folder."""
        from ..plots import stems_picture
        from .objects import lane_labels
        folder = Path(folder)
        check_replaceable(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(f".{folder.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for slot, wav in self.stems.items():
            _save_audio(tmp / f"{slot}.wav", wav, self.sample_rate)
        _save_audio(tmp / "mix.wav", self.mix, self.sample_rate)
        stems_picture(self.decoded, self.sample_rate, tmp / "stems.png", title=str(folder),
                      labels=lane_labels(self.meta))
        (tmp / "meta.json").write_text(json.dumps(self.meta, indent=1) + "\n")
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
        return folder

    def __repr__(self) -> str:
        what = ", ".join(self.stems) or "a mix"
        return (f"GenerationOutput({what}; {self.seconds:g} s at {self.sample_rate} Hz, "
                f"seed {self.meta.get('seed')})")
