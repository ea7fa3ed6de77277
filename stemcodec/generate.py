"""`python -m stemcodec.generate --slots vocals-free:4`: stems that play together, and their mix.

    python -m stemcodec.generate --slots drums,bass,piano --duration 10 --seed 3 --checkpoint runs/mini
    python -m stemcodec.generate --slots vocals-free:4 --given drums=my_drums.wav

Writes OUT/<slot>.wav per slot, mix.wav, stems.png (a spectrogram lane per slot) and
meta.json (arguments, seed, checkpoint and codec ids).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from .audio import load_audio, mix, save_audio
from .checkpoint import bundled
from .errors import AudioError, UserError, cli
from .slots import check_instruments, parse_slots

DEFAULT_MODEL = "generator-mini"


def load_model(checkpoint: str | None, device: str):
    from .model import MultiStreamTransformer
    if checkpoint is None:
        path = bundled(DEFAULT_MODEL)
        if path is None:
            raise UserError(
                "no bundled default model in this install yet; train one with `accelerate launch "
                "train/train.py --config configs/mini.yaml data.cache=CACHE out=runs/mini` "
                "and pass --checkpoint runs/mini")
        checkpoint = str(path)
    return MultiStreamTransformer.from_pretrained(checkpoint, device=device), checkpoint


def codec_for(model, codec_repo: str | None, device: str):
    from .codec import load_codec
    info = model.codec_info or {}
    if not info.get("name"):
        raise UserError("the checkpoint does not say which codec made its tokens")
    name = info.get("source") or info["name"]  # a codec checkpoint folder is found by its path
    codec = load_codec(name, info.get("bandwidth"), repository=codec_repo, device=device)
    if info.get("id") and codec.codec_id != info["id"]:
        raise UserError(f"the checkpoint was trained on codec {info['id']}, but {info['name']} "
                        f"here is {codec.codec_id}; use the same codec weights (--codec-repo)")
    return codec


def parse_given(items: Sequence[str], slots) -> dict[str, Path]:
    given = {}
    for item in items:
        slot, sep, file = item.partition("=")
        if not sep or not file:
            raise UserError(f"--given {item}: use SLOT=FILE, e.g. drums=my_drums.wav")
        if slot not in slots.names:
            raise UserError(f"--given {item}: '{slot}' is not among --slots {slots}")
        given[slot] = Path(file)
    return given


def stems_picture(stems: dict[str, torch.Tensor], rate: int, path: Path) -> None:
    """One log-spectrogram lane per slot, labelled with its instrument."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(stems), 1, figsize=(10, 1.6 * len(stems)), sharex=True,
                             squeeze=False)
    for ax, (name, wav) in zip(axes[:, 0], stems.items()):
        spec = torch.stft(wav.mean(0), 1024, 256, window=torch.hann_window(1024),
                          return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5))
        ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma",
                  extent=[0, wav.shape[-1] / rate, 0, rate / 2000], vmin=float(db.max()) - 80)
        ax.set_ylabel(f"{name}\nkHz")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stemcodec generate", description=__doc__.splitlines()[0])
    p.add_argument("--slots", default="vocals-free:4", help="PRESET[:N] or a list (drums,bass)")
    p.add_argument("--checkpoint", default=None, help="a model folder (default: the bundled one)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=250)
    p.add_argument("--top-p", type=float, default=0.0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--given", action="append", default=[], metavar="SLOT=FILE",
                   help="a stem to accompany: its tokens are forced, the other slots fit it")
    p.add_argument("--codec-repo", default=None, help="folder of the codec weights")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/<name>)")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.duration > 0:
        raise UserError(f"--duration {args.duration}: must be a positive number of seconds")
    if args.num_samples < 1:
        raise UserError("--num-samples must be at least 1")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    model, checkpoint = load_model(args.checkpoint, device)
    cfg = model.config
    slots = parse_slots(args.slots, cfg.vocabulary, cfg.max_slots)
    check_instruments(slots.names, cfg.vocabulary, f"checkpoint {checkpoint}")
    given_files = parse_given(args.given, slots)
    codec = codec_for(model, args.codec_repo, device)
    frames = int(round(args.duration * codec.frame_rate))
    if frames + cfg.num_codebooks > cfg.max_frames:
        raise UserError(f"--duration {args.duration:g}: longer than this model's "
                        f"{(cfg.max_frames - cfg.num_codebooks) / codec.frame_rate:.0f} s window")
    B, K = args.num_samples, len(slots)
    given = torch.zeros(B, K, cfg.num_codebooks, frames, dtype=torch.long)
    given_mask = torch.zeros(B, K, dtype=torch.bool)
    for slot, file in given_files.items():
        try:
            wav, _ = load_audio(file, codec.sample_rate, codec.channels)
        except AudioError as exc:
            raise UserError(f"--given {slot}={file}: {exc}") from None
        codes = codec.encode(wav[None])[0][:, :frames].cpu()
        k = slots.names.index(slot)
        given[:, k, :, : codes.shape[-1]] = codes
        given_mask[:, k] = True

    from .model import SamplingConfig, generate_codes
    instrument = torch.tensor(slots.ids(cfg.vocabulary))[None].expand(B, -1)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
    start = time.perf_counter()
    bar = tqdm(total=frames + cfg.num_codebooks - 1, unit="step", desc="generate",
               file=sys.stderr, dynamic_ncols=True)
    codes = generate_codes(model, instrument, frames, sampling, given, given_mask, generator,
                           on_step=lambda _: bar.update(1))
    bar.close()
    waves = codec.decode(codes.flatten(0, 1)).cpu().view(B, K, codec.channels, -1)
    took = time.perf_counter() - start

    name = args.out or Path("out") / f"{str(slots).replace(',', '-')}-seed{args.seed}"
    outputs = []
    for b in range(B):
        folder = Path(name) if B == 1 else Path(name) / f"sample_{b}"
        stems = {slot: waves[b, k] for k, slot in enumerate(slots.names)}
        mixed, gain = mix(list(stems.values()))
        for slot, wav in stems.items():
            save_audio(folder / f"{slot}.wav", wav * gain, codec.sample_rate)
        save_audio(folder / "mix.wav", mixed, codec.sample_rate)
        stems_picture(stems, codec.sample_rate, folder / "stems.png")
        meta = {"arguments": {k: (str(v) if isinstance(v, Path) else v)
                              for k, v in vars(args).items()},
                "slots": list(slots.names), "seed": args.seed, "sample": b,
                "checkpoint": str(checkpoint), "codec": codec.codec_id, "frames": frames,
                "given": sorted(given_files), "gain": gain}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        outputs.append(str(folder))
    seconds = args.duration * B
    print(f"wrote {', '.join(outputs)}: {K} stems x {args.duration:g} s, "
          f"{seconds / took:.2f}x real time on {device}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
