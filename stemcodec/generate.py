"""`python -m stemcodec.generate --slots vocals-free:4`: stems that play together, and their mix.

    python -m stemcodec.generate --slots drums,bass,piano --duration 30 --seed 3 --checkpoint runs/mini
    python -m stemcodec.generate --slots vocals-free:4 --given drums=my_drums.wav
    python -m stemcodec.generate --slots vocals-free:4 --given-mix song.wav --keep drums,bass
    python -m stemcodec.generate --slots solo-piano --prompt piano=opening.wav

Writes OUT/<slot>.wav per slot, mix.wav (levels balanced, never clipped), stems.png (a
spectrogram lane per slot) and meta.json (arguments, seed, checkpoint and codec ids).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from .audio import balance, mix, save_audio
from .checkpoint import bundled, file_sha256
from .conditions import Conditions, parse_keep, parse_pairs, read_conditions
from .errors import UserError, cli
from .plots import stems_picture
from .slots import check_instruments, parse_slots

DEFAULT_MODEL = "generator-mini"  # the band: drums, bass, guitar, piano, other
SOLO_MODEL = "generator-solo-piano"  # the single-instrument mode, for --slots solo-piano


def default_model(slots: str) -> str:
    """The bundled model for these --slots: one piano alone is the solo-piano generator's."""
    try:
        names = parse_slots(slots).names
    except UserError:
        names = ()  # the chosen model's vocabulary will name what is wrong
    return SOLO_MODEL if tuple(names) == ("piano",) else DEFAULT_MODEL


RECIPES = {DEFAULT_MODEL: ("configs/mini.yaml", "runs/mini"),
           SOLO_MODEL: ("configs/solo-piano.yaml", "runs/solo-piano")}


def load_model(checkpoint: str | None, device: str, slots: str = "vocals-free"):
    from .model import MultiStreamTransformer
    if checkpoint is None:
        name = default_model(slots)
        path = bundled(name)
        if path is None:
            config, run = RECIPES[name]
            raise UserError(
                f"no bundled {name} model in this install; train one with `accelerate launch "
                f"train/train.py --config {config}` and pass --checkpoint {run} "
                "(scripts/train_bundled.sh rebuilds the bundled ones)")
        checkpoint = str(path)
    if not (Path(checkpoint) / "config.json").is_file():
        raise UserError(f"--checkpoint {checkpoint}: no config.json there; pass a folder written "
                        "by train/train.py (it holds model.safetensors and config.json)")
    return MultiStreamTransformer.from_pretrained(checkpoint, device=device), checkpoint


def codec_for(model, codec_repo: str | None, device: str):
    from .codec import load_codec
    info = model.codec_info or {}
    if not info.get("name"):
        raise UserError("the checkpoint does not say which codec made its tokens")
    name = info.get("source") or info["name"]  # a codec checkpoint folder is found by its path
    codec = load_codec(name, info.get("bandwidth"), repository=codec_repo, device=device)
    if info.get("id") and not codec.makes(info["id"]):
        raise UserError(f"the checkpoint was trained on codec {info['id']}, but {info['name']} "
                        f"here is {codec.codec_id}; use the same codec weights (--codec-repo)")
    return codec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stemcodec generate", description=__doc__.splitlines()[0])
    p.add_argument("--slots", default="vocals-free:4", help="PRESET[:N] or a list (drums,bass)")
    p.add_argument("--checkpoint", default=None, help="a model folder (default: the bundled one)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds (prompt included)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", default="1.0",
                   help="0 = greedy; one value, or one per codebook: 1,0.9,0.8,0.8")
    p.add_argument("--top-k", default="250", help="0 = off; one value or one per codebook")
    p.add_argument("--top-p", default="0", help="0 = off; one value or one per codebook")
    p.add_argument("--num-samples", type=int, default=1, help="generated together as a batch")
    p.add_argument("--given", action="append", default=[], metavar="SLOT=FILE",
                   help="a stem to accompany: its tokens are forced, the other slots fit it")
    p.add_argument("--given-mix", type=Path, default=None, metavar="FILE",
                   help="a mix to separate; the --keep stems are given, the others regenerated")
    p.add_argument("--keep", default=None, metavar="SLOTS",
                   help="with --given-mix: the stems to keep (default drums,bass)")
    p.add_argument("--prompt", action="append", default=[], metavar="SLOT=FILE",
                   help="an opening to continue: the slot starts with it and goes on")
    p.add_argument("--cfg", type=float, default=1.0, metavar="SCALE",
                   help="classifier-free guidance over the given stems (1 = off, e.g. 3)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="the most the model sees at once (default: its training window); "
                        "longer durations slide")
    p.add_argument("--context", type=float, default=None, metavar="SECONDS",
                   help="what a sliding window keeps (default 3/4 of the window)")
    p.add_argument("--separator", default="htdemucs_6s", help="for --given-mix")
    p.add_argument("--demucs-repo", default=None, help="folder of the Demucs weights")
    p.add_argument("--codec-repo", default=None, help="folder of the codec weights")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/<name>)")
    return p


def check_numbers(args: argparse.Namespace) -> None:
    """The numeric arguments a user can get wrong, one line each."""
    if not args.duration > 0:
        raise UserError(f"--duration {args.duration}: must be a positive number of seconds")
    if args.num_samples < 1:
        raise UserError("--num-samples must be at least 1")
    args.temperature = per_codebook(args.temperature, "--temperature", float,
                                    lambda v: v >= 0, "0 (greedy) or more")
    args.top_k = per_codebook(args.top_k, "--top-k", int, lambda v: v >= 0, "0 (off) or more")
    args.top_p = per_codebook(args.top_p, "--top-p", float, lambda v: 0 <= v <= 1,
                              "between 0 and 1")
    if not args.cfg > 0:
        raise UserError(f"--cfg {args.cfg}: must be positive (1 = off)")
    for name in ("window", "context"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise UserError(f"--{name} {value}: must be a positive number of seconds")
    if args.keep is not None and args.given_mix is None:
        raise UserError("--keep chooses stems of --given-mix; add --given-mix FILE")


def per_codebook(text: str, flag: str, kind: type, valid, what: str):
    """`1.0` -> 1.0 and `1,0.9,0.8` -> [1.0, 0.9, 0.8] (one per codebook), each checked."""
    try:
        values = [kind(part) for part in str(text).split(",")]
    except ValueError:
        raise UserError(f"{flag} {text}: not {'an integer' if kind is int else 'a number'} "
                        "(one value, or one per codebook separated by commas)") from None
    if not all(valid(v) for v in values):
        raise UserError(f"{flag} {text}: must be {what}")
    return values[0] if len(values) == 1 else values


def check_codebooks(args: argparse.Namespace, codebooks: int) -> None:
    for flag, value in (("--temperature", args.temperature), ("--top-k", args.top_k),
                        ("--top-p", args.top_p)):
        if isinstance(value, list) and len(value) != codebooks:
            raise UserError(f"{flag}: {len(value)} values, but this model has {codebooks} "
                            "codebooks; give one value or one per codebook")


def window_frames(model, codec, args: argparse.Namespace) -> tuple[int, int | None]:
    """(window, context) in frames: the model's training window unless --window says."""
    cfg = model.config
    largest = cfg.max_frames - cfg.num_codebooks
    trained = (model.training_info or {}).get("window")
    window = int(round(args.window * codec.frame_rate)) if args.window else (trained or largest)
    if window > largest:
        raise UserError(f"--window {args.window:g}: this model holds at most "
                        f"{largest / codec.frame_rate:.0f} s")
    context = None if args.context is None else int(round(args.context * codec.frame_rate))
    if context is not None and context >= window:
        raise UserError(f"--context {args.context:g}: must be shorter than the window "
                        f"({window / codec.frame_rate:g} s)")
    return max(window, 2), context


def check_guidance(model, conditions: Conditions, scale: float) -> None:
    if scale == 1.0:
        return
    if not conditions.given_slots:
        raise UserError("--cfg guides the generated slots towards given stems; add --given or "
                        "--given-mix (a stem given for the whole duration)")
    if (model.training_info or {}).get("slot_dropout") is False:
        raise UserError("--cfg needs a model trained with slot dropout (data.p_all_slots < 1); "
                        "this checkpoint was not")


def write_sample(folder: Path, stems: dict[str, torch.Tensor], rate: int, meta: dict) -> None:
    """Stems at balanced levels, their mix, the picture and meta.json, into a temporary
    folder renamed into place, so a folder that exists is complete."""
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    gains = balance(list(stems.values()))
    mixed, peak_gain = mix([wav * g for wav, g in zip(stems.values(), gains)])
    levels = {}
    for (slot, wav), g in zip(stems.items(), gains):  # the stems add up to mix.wav
        save_audio(tmp / f"{slot}.wav", wav * g * peak_gain, rate)
        levels[slot] = g * peak_gain
    save_audio(tmp / "mix.wav", mixed, rate)
    stems_picture(stems, rate, tmp / "stems.png", title=str(folder))
    (tmp / "meta.json").write_text(json.dumps({**meta, "gains": levels}, indent=1) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_numbers(args)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    model, checkpoint = load_model(args.checkpoint, device, args.slots)
    cfg = model.config
    check_codebooks(args, cfg.num_codebooks)
    slots = parse_slots(args.slots, cfg.vocabulary, cfg.max_slots)
    # the instruments it was trained on (older checkpoints: its whole vocabulary)
    trained = (model.training_info or {}).get("instruments") or cfg.vocabulary
    check_instruments(slots.names, [n for n in cfg.vocabulary if n in trained],
                      f"checkpoint {checkpoint}")
    given = parse_pairs(args.given, "--given", slots)
    prompts = parse_pairs(args.prompt, "--prompt", slots)
    keep = parse_keep(args.keep, slots) if args.given_mix is not None else []
    codec = codec_for(model, args.codec_repo, device)
    frames = max(1, int(round(args.duration * codec.frame_rate)))
    window, context = window_frames(model, codec, args)
    separator = None
    if args.given_mix is not None:
        from .separate import load_separator
        separator = load_separator(args.separator, args.demucs_repo, device)
    conditions = read_conditions(codec, slots, frames, given=given, prompts=prompts,
                                 given_mix=args.given_mix, keep=keep, separator=separator)
    check_guidance(model, conditions, args.cfg)

    from .model import SamplingConfig, generate_codes
    B, K = args.num_samples, len(slots)
    instrument = torch.tensor(slots.ids(cfg.vocabulary))[None].expand(B, -1)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
    start = time.perf_counter()
    bar = tqdm(total=frames + cfg.num_codebooks - 1, unit="step", desc="generate",
               file=sys.stderr, dynamic_ncols=True)
    codes = generate_codes(
        model, instrument, frames, sampling,
        conditions.codes[None].expand(B, -1, -1, -1), conditions.known[None].expand(B, -1, -1),
        generator, on_step=lambda _: bar.update(1), cfg_scale=args.cfg, window=window,
        context=context)
    bar.close()
    waves = codec.decode(codes.flatten(0, 1)).cpu().view(B, K, codec.channels, -1)
    took = time.perf_counter() - start

    name = args.out or Path("out") / f"{str(slots).replace(',', '-')}-seed{args.seed}"
    weights = Path(checkpoint) / "model.safetensors"
    meta = {"arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "slots": list(slots.names), "seed": args.seed, "checkpoint": str(checkpoint),
            "checkpoint_sha256": file_sha256(weights)[:16] if weights.is_file() else None,
            "codec": codec.codec_id, "frames": frames, "frame_rate": codec.frame_rate,
            "window": window, "context": context, "conditions": conditions.sources}
    outputs = []
    for b in range(B):
        folder = Path(name) if B == 1 else Path(name) / f"sample_{b}"
        folder.parent.mkdir(parents=True, exist_ok=True)
        stems = {slot: waves[b, k] for k, slot in enumerate(slots.names)}
        write_sample(folder, stems, codec.sample_rate, {**meta, "sample": b})
        outputs.append(str(folder))
    seconds = frames / codec.frame_rate * B
    print(f"wrote {', '.join(outputs)}: {K} stems x {frames / codec.frame_rate:g} s, "
          f"{seconds / took:.2f}x real time on {device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
