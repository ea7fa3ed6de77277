"""`python -m stemcodec.generate --slots vocals-free:4`: stems that play together, and their mix.

    python -m stemcodec.generate --slots drums,bass,piano --duration 30 --seed 3 --checkpoint runs/mini
    python -m stemcodec.generate --slots vocals-free:4 --given drums=my_drums.wav
    python -m stemcodec.generate --slots vocals-free:4 --given-mix song.wav --keep drums,bass
    python -m stemcodec.generate --slots solo-piano --prompt piano=opening.wav
    python -m stemcodec.generate --instrument guitar=nylon-guitar,piano=electric-piano-1
    python -m stemcodec.generate --timbre guitar=clip.wav      # a guitar that sounds like it
    python -m stemcodec.generate --list-instruments

Writes OUT/<slot>.wav per slot, mix.wav (levels balanced, never clipped), stems.png (a
spectrogram lane per slot) and meta.json (arguments, seed, checkpoint and codec ids). The same
from Python: `StemGenerator.from_pretrained().generate(...)` (stemcodec.generation); this
command only reads its flags and saves what it returns. `--num-samples N` makes seeds SEED ..
SEED+N-1 in one batch, sample_i being what `--seed SEED+i` makes alone.

`--stream` writes the output folder while the piece is generated (the wav files grow chunk by
chunk); `--stream -` writes the mix as a WAV stream to standard output, for a player:

    python -m stemcodec.generate --slots vocals-free:4 --duration 60 --stream - | aplay
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import UserError, cli
from .generation import StemGenerator


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
    p.add_argument("--num-samples", type=int, default=1,
                   help="generated together as a batch, seeds SEED, SEED+1, ...")
    p.add_argument("--given", action="append", default=[], metavar="SLOT=FILE",
                   help="a stem to accompany: its tokens are forced, the other slots fit it")
    p.add_argument("--given-mix", type=Path, default=None, metavar="FILE",
                   help="a mix to separate; the --keep stems are given, the others regenerated")
    p.add_argument("--keep", default=None, metavar="SLOTS",
                   help="with --given-mix: the stems to keep (default drums,bass)")
    p.add_argument("--prompt", action="append", default=[], metavar="SLOT=FILE",
                   help="an opening to continue: the slot starts with it and goes on")
    p.add_argument("--instrument", action="append", default=[], metavar="SLOT=NAME,...",
                   help="the instrument a slot plays, e.g. guitar=nylon-guitar (a model with "
                        "instrument objects; names: --list-instruments); others draw one")
    p.add_argument("--timbre", action="append", default=[], metavar="SLOT=FILE",
                   help="a reference clip of the instrument a slot plays (any audio)")
    p.add_argument("--list-instruments", action="store_true",
                   help="print the instrument names of --instrument by family, and exit")
    p.add_argument("--cfg", type=float, default=1.0, metavar="SCALE",
                   help="classifier-free guidance over the given stems (1 = off, e.g. 3)")
    p.add_argument("--window", type=float, default=None, metavar="SECONDS",
                   help="the most the model sees at once (default: its training window); "
                        "longer durations slide")
    p.add_argument("--context", type=float, default=None, metavar="SECONDS",
                   help="what a sliding window keeps (default 3/4 of the window, at least 8 s where 2 s are left to slide)")
    p.add_argument("--separator", default="htdemucs_6s", help="for --given-mix")
    p.add_argument("--demucs-repo", default=None, help="folder of the Demucs weights")
    p.add_argument("--codec-repo", default=None, help="folder of the codec weights")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--quantize", default=None, metavar="int8",
                   help="int8: dynamic int8 quantisation of the transformer's linear layers "
                        "(CPU only; the codec stays float)")
    p.add_argument("--threads", default="auto", metavar="N",
                   help="CPU threads (default auto: the fastest of 1, 2 and all cores for this "
                        "model and slot count, measured once and remembered)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default out/<name>)")
    p.add_argument("--stream", nargs="?", const="", default=None, metavar="-",
                   help="write the audio while it is generated: the output folder's wav files "
                        "chunk by chunk, or with `--stream -` the mix as WAV to standard output "
                        "for a player (| aplay, | ffplay -), and the folder too with --out")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_instruments:
        from .generation.objects import list_instruments
        print(list_instruments())
        return 0
    if args.num_samples < 1:
        raise UserError("--num-samples must be at least 1")
    if args.stream is not None:
        check_stream(args)
    generator = StemGenerator.from_pretrained(args.checkpoint, device=args.device,
                                              codec_repo=args.codec_repo,
                                              quantize=args.quantize,
                                              threads=parse_threads(args.threads))
    options = dict(given=args.given, prompt=args.prompt, given_mix=args.given_mix,
                   keep=args.keep, temperature=args.temperature, top_k=args.top_k,
                   top_p=args.top_p, cfg=args.cfg, window=args.window, context=args.context,
                   separator=args.separator, demucs_repo=args.demucs_repo,
                   instrument=args.instrument, timbre=args.timbre, progress=True)
    if args.stream is not None:
        return stream(args, generator, options)
    start = time.perf_counter()
    outputs = generator.generate_batch(
        range(args.seed, args.seed + args.num_samples), args.slots, args.duration, **options)
    took = time.perf_counter() - start
    first = outputs[0]
    name = args.out or default_folder(first.meta["slots"], args.seed)
    folders = [out.save(name if len(outputs) == 1 else Path(name) / f"sample_{b}")
               for b, out in enumerate(outputs)]
    what = f"{len(first.stems)} stems" if first.stems else "a mix"
    print(f"wrote {', '.join(map(str, folders))}: {what} x {first.seconds:g} s, "
          f"{first.seconds * len(outputs) / took:.2f}x real time on {generator.device}"
          f"{describe(first.meta.get('threads'), args.quantize)}")
    return 0


def describe(threads: int | None, quantize: str | None) -> str:
    """` (1 thread, int8)`: how it ran, where that is worth saying."""
    parts = [f"{threads} thread{'s' if threads > 1 else ''}"] if threads else []
    parts += [quantize] if quantize else []
    return f" ({', '.join(parts)})" if parts else ""


def parse_threads(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--threads {text}: a number of CPU threads, or auto") from None


def default_folder(slots: Sequence[str], seed: int) -> Path:
    return Path("out") / f"{'-'.join(slots)}-seed{seed}"


def check_stream(args: argparse.Namespace) -> None:
    """--stream's mistakes, before a model is loaded."""
    if args.stream not in ("", "-"):
        raise UserError(f"--stream {args.stream}: takes no value (the output folder is written "
                        "as the piece is made) or - (WAV to standard output)")
    if args.num_samples != 1:
        raise UserError("--stream makes one piece; drop --num-samples")
    if args.stream == "-" and sys.stdout.isatty():
        raise UserError("--stream - writes WAV audio to standard output: pipe it into a player "
                        "(... --stream - | aplay, or | ffplay -)")


def stream(args: argparse.Namespace, generator: StemGenerator, options: dict) -> int:
    """Generate one piece, writing each chunk as it comes: the mix to standard output
    (`--stream -`) and/or the output folder."""
    from .generation.sinks import StreamFolder, WavPipe
    to_stdout = args.stream == "-"
    report = sys.stderr if to_stdout else sys.stdout  # standard output carries only the WAV
    chunks = generator.stream(args.slots, args.duration, args.seed, **options)
    folder = None if to_stdout and args.out is None else \
        args.out or default_folder(chunks.names, args.seed)
    files = None if folder is None else \
        StreamFolder(folder, [] if chunks.levels.mixed else list(chunks.names),
                     chunks.sample_rate, chunks.channels)
    pipe = WavPipe(sys.stdout.buffer, chunks.sample_rate, chunks.channels) if to_stdout else None
    try:
        for chunk in chunks:
            if pipe is not None:
                try:
                    pipe.write(chunk.mix)
                except BrokenPipeError:  # the player quit: the folder, if any, is finished
                    pipe = None
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    print(f"\nstandard output closed (the player stopped): "
                          f"{'stopping' if files is None else f'writing {files.folder} on'}",
                          file=sys.stderr)
                    if files is None:
                        chunks.close()
                        return 0
            if files is not None:
                files.write(chunk)
    finally:
        if files is not None and chunks.output is None:
            files.close()  # what was written stays readable; the mark stays
    out = chunks.output
    where = "standard output" if files is None else str(files.finish(out, chunks.levels))
    what = f"{len(out.stems)} stems" if out.stems else "a mix"
    print(f"streamed {where}: {what} x {out.seconds:g} s, "
          f"{out.seconds / chunks.timing['wall_s']:.2f}x real time on {generator.device}, "
          f"first audio after {chunks.timing['first_audio_s']:.2f} s", file=report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
