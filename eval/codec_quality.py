"""Codec quality on rendered stems, next to Opus as the reference codec.

    python eval/codec_quality.py data/corpus/folk-band --codec mini --limit 8 --json q.json
    python eval/codec_quality.py data/corpus/folk-band --codec encodec_24khz --bandwidth 6 \
        --opus-bitrate 6 --json q.json

Every stem `CORPUS/<piece>/<slot>.wav` (mix.wav passed over) of the first `--limit` pieces is
encoded and decoded by the codec and, separately, by Opus (`ffmpeg -c:a libopus -b:a <N>k`),
both at the codec's sample rate and channels; SI-SDR (dB, higher is better), mel distance and
multi-resolution STFT distance (lower is better) are averaged over the stems. Silent or
unreadable stems get one line and are passed over. A codec that normalises loudness
(encodec_48khz) has its output brought back to the stem's level before scoring.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from stemcodec.audio import is_audio_path, is_silent, load_audio, rms_db
from stemcodec.codec import Codec, load_codec
from stemcodec.errors import AudioError, UserError, cli
from stemcodec.metrics.opus import opus_roundtrip
from stemcodec.metrics.quality import mel_distance, mrstft_distance, si_sdr

KEYS = ("mel_distance", "mrstft_distance", "si_sdr")


def find_stems(corpora: Sequence[Path], limit: int | None) -> tuple[list[Path], int]:
    """Stems of the first `limit` pieces (sorted per corpus) and the number of pieces."""
    pieces = []
    for corpus in corpora:
        if not corpus.is_dir():
            raise UserError(f"{corpus} is not a folder; render a corpus with "
                            "`python -m stemcodec.render --recipe folk-band --out FOLDER`")
        pieces += sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith("."))
    stems_of = {p: sorted(s for s in p.iterdir() if s.is_file() and is_audio_path(s)
                          and s.stem.lower() != "mix") for p in pieces}
    pieces = [p for p in pieces if stems_of[p]][:limit]
    if not pieces:
        raise UserError(f"no pieces with stems (<piece>/<slot>.wav) in "
                        f"{', '.join(map(str, corpora))}")
    return [s for p in pieces for s in stems_of[p]], len(pieces)


def scores(reference: torch.Tensor, estimate: torch.Tensor, rate: int) -> dict[str, float]:
    return {"mel_distance": mel_distance(reference, estimate, rate),
            "mrstft_distance": mrstft_distance(reference, estimate),
            "si_sdr": si_sdr(reference, estimate)}


def roundtrip(codec: Codec, wav: torch.Tensor) -> torch.Tensor:
    """`[C, S]` through the codec and back, at the stem's level when the codec drops it."""
    out = codec.decode(codec.encode(wav[None]), length=wav.shape[-1])[0].cpu()  # [C, S]
    if codec.unit_rms and not is_silent(out):
        out = out * 10 ** ((rms_db(wav) - rms_db(out)) / 20)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="+", type=Path, metavar="CORPUS",
                   help="rendered corpora: CORPUS/<piece>/<slot>.wav")
    p.add_argument("--codec", default="mini",
                   help="encodec_24khz, encodec_48khz, mini, debug, or a codec folder")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (default: the codec's)")
    p.add_argument("--codec-repo", default=None, help="folder with the official EnCodec weights")
    p.add_argument("--opus-bitrate", type=float, default=6.0, help="kbps (libopus: 6 and up)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pieces")
    p.add_argument("--max-seconds", type=float, default=None, help="score only the start")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="write the averages here")
    return p


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    codec = load_codec(args.codec, args.bandwidth, args.codec_repo, args.device)
    stems, pieces = find_stems(args.corpora, args.limit)
    rate = codec.sample_rate
    totals: dict[str, list[dict[str, float]]] = {"codec": [], "opus": []}
    for path in tqdm(stems, desc=f"{codec.name} vs opus", unit="stem", file=sys.stderr):
        try:
            wav, _ = load_audio(path, rate, codec.channels)
        except AudioError as exc:
            tqdm.write(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        if args.max_seconds is not None:
            wav = wav[:, : int(args.max_seconds * rate)]
        if is_silent(wav):
            tqdm.write(f"skipped {path}: silent", file=sys.stderr)
            continue
        totals["codec"].append(scores(wav, roundtrip(codec, wav), rate))
        totals["opus"].append(scores(wav, opus_roundtrip(wav, rate, args.opus_bitrate), rate))
    if not totals["codec"]:
        raise UserError("no stem could be scored (all unreadable or silent)")
    result = {name: {k: round(sum(r[k] for r in rows) / len(rows), 4) for k in KEYS}
              for name, rows in totals.items()}
    result["info"] = {"codec_id": codec.codec_id, "bandwidth_kbps": codec.bandwidth,
                      "opus_bitrate_kbps": args.opus_bitrate, "sample_rate": rate,
                      "stems": len(totals["codec"]), "pieces": pieces}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    labels = {"codec": f"{codec.name} {codec.bandwidth:g} kbps",
              "opus": f"opus {args.opus_bitrate:g} kbps"}
    print(f"{'':20s} {'mel dist':>9s} {'MR-STFT':>9s} {'SI-SDR dB':>10s}")
    for name in ("codec", "opus"):
        r = result[name]
        print(f"{labels[name]:20s} {r['mel_distance']:9.3f} {r['mrstft_distance']:9.3f} "
              f"{r['si_sdr']:10.2f}")
    print(f"scored {len(totals['codec'])} stems of {pieces} pieces"
          + (f"; figures in {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
