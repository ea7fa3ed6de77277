"""Sets of stems to score, one folder per piece (`<piece>/<slot>.wav` and `mix.wav`): the real
stems of a rendered corpus (the reference) or a model's generations.

A model's piece `seed<s>` is what `python -m stemcodec.generate --seed s` makes (the same
StemGenerator call), at the model's own levels (the CLI balances them). A mix-mode model's
mixes are split into stems by a separator (the MusicGen-style baseline), or with none kept
as mix.wav alone, which the report scores at the mix level.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from stemcodec.audio import load_audio, save_audio
from stemcodec.errors import AudioError, UserError
from stemcodec.slots import SlotSpec, parse_slots

if TYPE_CHECKING:
    from stemcodec.separate import Separator


def reference_set(corpus: Path, slots: SlotSpec, pieces: int, duration: float, out: Path,
                  rate: int = 24000) -> list[Path]:
    """The first `duration` seconds of the first `pieces` pieces of a rendered corpus that
    have every slot (read as stemcodec.corpus.layout reads a corpus); bad files get one line
    and are passed over."""
    from stemcodec.corpus.layout import find_pieces
    written = []
    for piece in find_pieces([corpus], slots.names):
        if len(written) == pieces:
            break
        if not all(slot in piece.stems for slot in slots.names):
            continue
        try:
            stems = {s: load_audio(piece.stems[s], rate, 1)[0][:, : int(duration * rate)]
                     for s in slots.names}
        except AudioError as exc:
            print(f"skipped {piece.folder}: {exc}", file=sys.stderr)
            continue
        # a nested piece is named by its path under the corpus, so two never share a folder
        name = "--".join(piece.folder.relative_to(corpus).parts) or corpus.name
        written.append(write_piece(out / name, stems, rate, meta=piece.meta))
    if not written:
        raise UserError(f"{corpus}: no piece has all of {slots} as <slot>.wav; render one with "
                        "`python -m stemcodec.render --recipe folk-band --out CORPUS`")
    return written


def write_piece(folder: Path, stems: dict[str, torch.Tensor], rate: int,
                mixed: torch.Tensor | None = None, meta: dict | None = None) -> Path:
    """<slot>.wav per stem and mix.wav: `mixed` if given (a mix model's own), else their mix;
    meta.json with what of `meta` says which instrument each slot chose (a generation's
    `objects`, a rendered piece's `stem_instruments`: the object figures read it), if any."""
    from stemcodec.audio import mix
    for slot, wav in stems.items():
        save_audio(folder / f"{slot}.wav", wav, rate)
    save_audio(folder / "mix.wav", mixed if mixed is not None else mix(list(stems.values()))[0],
               rate)
    chosen = {k: meta[k] for k in ("objects", "stem_instruments") if meta and meta.get(k)}
    if chosen:
        (folder / "meta.json").write_text(json.dumps(chosen, indent=1) + "\n")
    return folder


def model_set(checkpoint: str, slots: SlotSpec, pieces: int, duration: float, seed: int,
              out: Path, batch: int = 4, separator: str | Separator | None = None,
              demucs_repo: str | None = None, device: str = "cpu",
              temperature: float = 1.0, top_k: int = 250) -> list[Path]:
    """`pieces` generations of `slots`, piece `seed<s>` being what `stemcodec.generate --seed s`
    makes (the same StemGenerator call, `batch` seeds at a time), at the model's own levels. A
    mix-mode model's mixes are split by `separator` (a name, or a loaded
    stemcodec.separate.Separator), or with none kept as mix.wav alone."""
    from stemcodec import StemGenerator
    generator = StemGenerator.from_pretrained(checkpoint, device=device)
    split = None
    if separator is not None and generator.model_for(str(slots)).model.config.mode == "mix":
        from stemcodec.separate import load_separator
        split = load_separator(separator, demucs_repo, device) \
            if isinstance(separator, str) else separator
    written = []
    bar = tqdm(total=pieces, unit="piece", desc=Path(checkpoint).name, file=sys.stderr)
    for first in range(seed, seed + pieces, batch):
        seeds = range(first, min(first + batch, seed + pieces))
        for piece in generator.generate_batch(seeds, str(slots), duration,
                                              temperature=temperature, top_k=top_k):
            folder, rate = out / f"seed{piece.meta['seed']}", piece.sample_rate
            if piece.meta["mode"] == "mix":
                mixed = piece.decoded["mix"]
                stems = {} if split is None else separate_to_slots(split, mixed, rate, slots)
                written.append(write_piece(folder, stems, rate, mixed, piece.meta))
            else:
                written.append(write_piece(folder, piece.decoded, rate, meta=piece.meta))
            bar.update(1)
    bar.close()
    return written


def separate_to_slots(separator: Separator, wav: torch.Tensor, rate: int,
                      slots: SlotSpec) -> dict[str, torch.Tensor]:
    """The separator's stems of `wav [C, S]` that are among `slots`, mono at `rate`."""
    from stemcodec.audio import resample, to_channels
    x = to_channels(resample(wav, rate, separator.sample_rate), separator.channels)
    stems = separator.separate(x, separator.sample_rate)
    return {s: to_channels(resample(stems[s].cpu(), separator.sample_rate, rate), 1)
            for s in slots.names if s in stems}


def make_set(out: Path, slots: str, *, corpus: Path | None = None,
             checkpoint: str | None = None, pieces: int = 16, duration: float = 10.0,
             seed: int = 0, batch: int = 4, temperature: float = 1.0, top_k: int = 250,
             separator: str | None = None, demucs_repo: str | None = None,
             device: str = "cpu") -> list[Path]:
    """The set of `corpus`'s real stems or of `checkpoint`'s generations (exactly one of the
    two) in OUT/<piece>/, and OUT/set.json saying what made it; the piece folders."""
    if (corpus is None) == (checkpoint is None):
        raise UserError("give one of --corpus and --checkpoint")
    if pieces < 1 or not duration > 0:
        raise UserError("--pieces must be at least 1 and --duration positive")
    spec = parse_slots(slots)
    if corpus is not None:
        if not corpus.is_dir():
            raise UserError(f"--corpus {corpus} is not a folder")
        written = reference_set(corpus, spec, pieces, duration, out)
        source = {"corpus": str(corpus)}
    else:
        written = model_set(checkpoint, spec, pieces, duration, seed, out, batch, separator,
                            demucs_repo, device, temperature, top_k)
        source = {"checkpoint": checkpoint, "separator": separator, "seed": seed}
    (out / "set.json").write_text(json.dumps(
        {**source, "slots": list(spec.names), "duration": duration,
         "pieces": [p.name for p in written]}, indent=1) + "\n")
    return written


def describe_set(written: list[Path], slots: str) -> str:
    """What a set holds, for its last line: pieces of the slots, or mixes only."""
    mixes_only = written and not any(f.stem != "mix" for f in written[0].glob("*.wav"))
    return "mixes (no --separator: mix.wav only)" if mixes_only else \
        f"pieces of {parse_slots(slots)}"
