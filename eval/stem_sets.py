"""Sets of stems to score: real stems of a rendered corpus (the reference) or a model's
generations, one folder per piece as `eval/consistency.py` reads them.

    python eval/stem_sets.py --corpus data/corpus/folk-band --slots vocals-free --pieces 16 --out eval-out/reference
    python eval/stem_sets.py --checkpoint runs/mini --slots vocals-free --pieces 16 --out eval-out/mini
    python eval/stem_sets.py --checkpoint runs/baseline-mix --slots vocals-free --separator htdemucs_6s --out eval-out/mix

Writes OUT/<piece>/<slot>.wav, OUT/<piece>/mix.wav and OUT/set.json (what made the set). A model
generates `--pieces` pieces of `--duration` seconds (seeds `--seed`, `--seed`+1, ...) in batches,
sliding past its training window as `stemcodec.generate` does. A mix-mode model (one stream)
generates mixes that `--separator` splits into stems: the MusicGen-style baseline. Without
`--separator` its pieces hold mix.wav alone, which eval/report.py scores at the mix level.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from stemcodec.audio import load_audio, save_audio
from stemcodec.errors import AudioError, UserError, cli
from stemcodec.slots import SlotSpec, parse_slots


def reference_set(corpus: Path, slots: SlotSpec, pieces: int, duration: float, out: Path,
                  rate: int = 24000) -> list[Path]:
    """The first `duration` seconds of the first `pieces` pieces of a rendered corpus that
    have every slot; bad files get one line and are passed over."""
    folders = sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith("."))
    written = []
    for folder in folders:
        if len(written) == pieces:
            break
        if not all((folder / f"{slot}.wav").is_file() for slot in slots.names):
            continue
        try:
            stems = {s: load_audio(folder / f"{s}.wav", rate, 1)[0][:, : int(duration * rate)]
                     for s in slots.names}
        except AudioError as exc:
            print(f"skipped {folder}: {exc}", file=sys.stderr)
            continue
        written.append(write_piece(out / folder.name, stems, rate))
    if not written:
        raise UserError(f"{corpus}: no piece has all of {slots} as <slot>.wav; render one with "
                        "`python -m stemcodec.render --recipe folk-band --out CORPUS`")
    return written


def write_piece(folder: Path, stems: dict[str, torch.Tensor], rate: int,
                mixed: torch.Tensor | None = None) -> Path:
    """<slot>.wav per stem and mix.wav: `mixed` if given (a mix model's own), else their mix."""
    from stemcodec.audio import mix
    for slot, wav in stems.items():
        save_audio(folder / f"{slot}.wav", wav, rate)
    save_audio(folder / "mix.wav", mixed if mixed is not None else mix(list(stems.values()))[0],
               rate)
    return folder


def model_set(checkpoint: str, slots: SlotSpec, pieces: int, duration: float, seed: int,
              out: Path, batch: int = 4, separator=None,
              demucs_repo: str | None = None, device: str = "cpu",
              temperature: float = 1.0, top_k: int = 250) -> list[Path]:
    """`pieces` generations of `slots`. A mix-mode model's mixes are split by `separator` (a
    name, or a loaded stemcodec.separate.Separator), or with none kept as mix.wav alone."""
    from stemcodec.generate import codec_for, load_model
    from stemcodec.model import SamplingConfig, generate_codes
    model, checkpoint = load_model(checkpoint, device)
    codec = codec_for(model, None, device)
    cfg = model.config
    mix_mode = cfg.mode == "mix"
    split = None
    if mix_mode:
        if separator is not None:
            from stemcodec.separate import load_separator
            split = load_separator(separator, demucs_repo, device) \
                if isinstance(separator, str) else separator
        names = ["mix"]
    else:
        names = list(slots.names)
        from stemcodec.slots import check_instruments
        check_instruments(names, cfg.vocabulary, f"checkpoint {checkpoint}")
    frames = max(1, int(round(duration * codec.frame_rate)))
    window = (model.training_info or {}).get("window") or cfg.max_frames - cfg.num_codebooks
    ids = torch.tensor([cfg.instruments.index(n) for n in names])
    written = []
    bar = tqdm(total=pieces, unit="piece", desc=Path(checkpoint).name, file=sys.stderr)
    for first in range(0, pieces, batch):
        n = min(batch, pieces - first)
        generator = torch.Generator(device=device).manual_seed(seed + first)
        codes = generate_codes(model, ids[None].expand(n, -1), frames,
                               SamplingConfig(temperature, top_k), generator=generator,
                               window=window)
        waves = codec.decode(codes.flatten(0, 1)).cpu().view(n, len(names), codec.channels, -1)
        for b in range(n):
            name = f"seed{seed + first}-{b}" if batch > 1 else f"seed{seed + first}"
            if mix_mode:
                stems = {} if split is None else \
                    separate_to_slots(split, waves[b, 0], codec.sample_rate, slots)
                written.append(write_piece(out / name, stems, codec.sample_rate, waves[b, 0]))
            else:
                stems = {s: waves[b, k] for k, s in enumerate(names)}
                written.append(write_piece(out / name, stems, codec.sample_rate))
            bar.update(1)
    bar.close()
    return written


def separate_to_slots(separator, wav: torch.Tensor, rate: int,
                      slots: SlotSpec) -> dict[str, torch.Tensor]:
    from stemcodec.audio import resample, to_channels
    x = to_channels(resample(wav, rate, separator.sample_rate), separator.channels)
    stems = separator.separate(x, separator.sample_rate)
    return {s: to_channels(resample(stems[s].cpu(), separator.sample_rate, rate), 1)
            for s in slots.names if s in stems}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--corpus", type=Path, help="a rendered corpus: real stems")
    source.add_argument("--checkpoint", help="a model folder: its generations")
    p.add_argument("--slots", default="vocals-free")
    p.add_argument("--pieces", type=int, default=16)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=250)
    p.add_argument("--separator", default=None,
                   help="splits a mix-mode model's mixes into stems (without: mixes only)")
    p.add_argument("--demucs-repo", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, required=True)
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pieces < 1 or not args.duration > 0:
        raise UserError("--pieces must be at least 1 and --duration positive")
    slots = parse_slots(args.slots)
    if args.corpus is not None:
        if not args.corpus.is_dir():
            raise UserError(f"--corpus {args.corpus} is not a folder")
        written = reference_set(args.corpus, slots, args.pieces, args.duration, args.out)
        source = {"corpus": str(args.corpus)}
    else:
        written = model_set(args.checkpoint, slots, args.pieces, args.duration, args.seed,
                            args.out, args.batch, args.separator, args.demucs_repo, args.device,
                            args.temperature, args.top_k)
        source = {"checkpoint": args.checkpoint, "separator": args.separator, "seed": args.seed}
    (args.out / "set.json").write_text(json.dumps(
        {**source, "slots": list(slots.names), "duration": args.duration,
         "pieces": [p.name for p in written]}, indent=1) + "\n")
    mixes_only = written and not any(f.stem != "mix" for f in written[0].glob("*.wav"))
    what = "mixes (no --separator: mix.wav only)" if mixes_only else f"pieces of {slots}"
    print(f"wrote {len(written)} {what} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
