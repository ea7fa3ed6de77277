"""Codec quality on rendered stems next to Opus: distances, pitch, buzz, notes, instrument.

Distances, and what a listener notices (the notes, their pitch, a buzz, the instrument).

    python eval/codec_quality.py data/held-out/folk-band --codec mini --max-seconds 10 --json q.json
    python eval/codec_quality.py data/corpus/folk-band --codec encodec_24khz --bandwidth 6 \
        --opus-bitrate 6 --json q.json
    python eval/codec_quality.py --tones-only --codec runs/codec-mini   # the tone test alone
    python eval/codec_quality.py data/held-out/folk-band --codec mini --spectrograms stems.png

Every stem `CORPUS/<piece>/<slot>.wav` (mix.wav passed over) of the first `--limit` pieces is
encoded and decoded by the codec and, separately, by Opus (`ffmpeg -c:a libopus -b:a <N>k`),
both at the codec's sample rate and channels. Per stem, averaged over stems:
    mel_distance, mrstft_distance (lower is better), si_sdr (dB, higher is better)
    chroma_correlation   constant-Q chroma of reconstruction vs original (1 is perfect)
    cqt_distance         mean |dB| difference of constant-Q spectra (lower is better)
    buzz_db              peak prominence at multiples of --buzz-rates (default: the frame
                         rate and the SEANet decoder's upsampling rates, 75/600/3000 Hz at
                         75 frames/s); the originals' figure is printed beside it
    identity             share of the originals' active seconds that the bundled instrument
                         classifier labels as the stem's slot, overall and per instrument
Test tones: sines and sawtooths at 10 pitches from 55 to 1319 Hz (0.3 peak, 2 s) through both
codecs: the share whose strongest spectral peak lies within 3 % of the pitch, and the worst
relative error (stemcodec/evaluation/codec_quality.py holds the code). Silent or unreadable stems get one line and are passed over. A codec that
normalises loudness (encodec_48khz) has its output brought back to the stem's level first.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from pathlib import Path

from stemcodec.codec import load_codec
from stemcodec.errors import UserError, cli
from stemcodec.evaluation.codec_quality import coders, piece_lanes, score_corpora, tone_figures
from stemcodec.metrics.classifier import load_classifier
from stemcodec.metrics.pitch import tone_signal
from stemcodec.plots import note_lanes_picture, tone_spectra_picture


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("corpora", nargs="*", type=Path, metavar="CORPUS",
                   help="rendered corpora: CORPUS/<piece>/<slot>.wav")
    p.add_argument("--codec", default="mini",
                   help="encodec_24khz, encodec_48khz, mini, debug, or a codec folder")
    p.add_argument("--bandwidth", type=float, default=None, help="kbps (default: the codec's)")
    p.add_argument("--codec-repo", default=None, help="folder with the official EnCodec weights")
    p.add_argument("--opus-bitrate", type=float, default=6.0, help="kbps (libopus: 6 and up)")
    p.add_argument("--limit", type=int, default=None, help="only the first N pieces")
    p.add_argument("--max-seconds", type=float, default=None, help="score only the start")
    p.add_argument("--buzz-rates", type=float, nargs="+", default=None, metavar="HZ",
                   help="rates whose multiples the buzz figure looks at (default: see above)")
    p.add_argument("--classifier", default=None,
                   help="instrument classifier folder (default: the bundled one)")
    p.add_argument("--no-identity", action="store_true", help="skip the classifier figures")
    p.add_argument("--tones-only", action="store_true", help="only the test tones")
    p.add_argument("--plot", type=Path, default=None,
                   help="PNG of each test tone's spectrum through the codec and Opus")
    p.add_argument("--spectrograms", type=Path, default=None, metavar="PNG",
                   help="PNG of one piece's stems on a note axis (constant-Q): each stem as it "
                        "is, through the codec and through Opus")
    p.add_argument("--spectrogram-piece", type=int, default=0, metavar="I",
                   help="which piece --spectrograms draws (0: the first)")
    p.add_argument("--spectrogram-seconds", type=float, default=8.0, metavar="S",
                   help="how much of it (default 8 s)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p


def print_tones(tones: dict[str, dict], labels: dict[str, str]) -> None:
    for name, t in tones.items():
        print(f"{labels[name]:20s} tones at pitch {round(t['at_pitch'] * t['tones'])}/{t['tones']}"
              f"  worst error {100 * t['worst_error']:.1f} %")


def print_table(result: dict, labels: dict[str, str]) -> None:
    print(f"{'':20s} {'mel dist':>9s} {'MR-STFT':>9s} {'SI-SDR dB':>10s} {'chroma':>7s} "
          f"{'CQT dB':>7s} {'buzz dB':>8s} {'identity':>9s}")
    for name in ("codec", "opus"):
        r = result[name]
        print(f"{labels[name]:20s} {r['mel_distance']:9.3f} {r['mrstft_distance']:9.3f} "
              f"{r['si_sdr']:10.2f} {r['chroma_correlation']:7.3f} {r['cqt_distance']:7.2f} "
              f"{r['buzz_db']:+8.1f} {r.get('identity', math.nan):9.3f}")
    original = result["original"]
    print(f"{'original':20s} {'':49s} {original['buzz_db']:+8.1f} "
          f"{original.get('identity', math.nan):9.3f}")
    for name in ("codec", "opus", "original"):
        per = result[name].get("identity_by_instrument")
        if per:
            print(f"identity by instrument, {labels.get(name, name)}: "
                  + ", ".join(f"{k} {v:.2f}" for k, v in per.items()))


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        raise UserError("--limit must be at least 1")
    if not args.corpora and not args.tones_only:
        raise UserError("give rendered corpora (CORPUS/<piece>/<slot>.wav), or --tones-only")
    codec = load_codec(args.codec, args.bandwidth, args.codec_repo, args.device)
    shown = Path(codec.source).name if codec.source else codec.name  # a folder by its name
    labels = {"codec": f"{shown} {codec.bandwidth:g} kbps",
              "opus": f"opus {args.opus_bitrate:g} kbps"}
    coding = coders(codec, args.opus_bitrate)
    outputs: dict[str, dict] | None = None if args.plot is None else {}
    tones = tone_figures(coding, codec.sample_rate, outputs)
    if args.plot is not None:
        originals = {n: tone_signal(n.split()[0], float(n.split()[1]), rate=codec.sample_rate)
                     for n in outputs["codec"]}
        tone_spectra_picture({"original": originals, **{labels[k]: v for k, v in outputs.items()}},
                             codec.sample_rate, args.plot,
                             {labels[k]: t["peaks"] for k, t in tones.items()},
                             title=f"test tones through {labels['codec']} and {labels['opus']}")
        print(f"tone spectra in {args.plot}")
    info = {"codec_id": codec.codec_id, "bandwidth_kbps": codec.bandwidth,
            "opus_bitrate_kbps": args.opus_bitrate, "sample_rate": codec.sample_rate}
    if args.tones_only:
        write_json(args.json, {"tones": tones, "info": info})
        print_tones(tones, labels)
        return 0
    if args.spectrograms is not None:
        lanes = piece_lanes({labels[k]: fn for k, fn in coding.items()}, args.corpora,
                            codec.sample_rate, codec.channels, args.spectrogram_seconds,
                            args.spectrogram_piece)
        note_lanes_picture(lanes, codec.sample_rate, args.spectrograms,
                           title=f"stems through {labels['codec']} and {labels['opus']}")
        print(f"spectrograms in {args.spectrograms}")
    classifier = None if args.no_identity else load_classifier(args.classifier)
    result = score_corpora(codec, coding, args.corpora, args.limit, args.max_seconds,
                           args.buzz_rates, classifier)
    for name in ("codec", "opus"):
        result[name]["tones_at_pitch"] = tones[name]["at_pitch"]
        result[name]["tones_worst_error"] = round(tones[name]["worst_error"], 4)
    result["tones"] = tones
    result["info"] = {**info, **result["info"]}
    write_json(args.json, result)
    print_table(result, labels)
    print_tones(tones, labels)
    print(f"scored {result['info']['stems']} stems of {result['info']['pieces']} pieces"
          + (f"; figures in {args.json}" if args.json else ""))
    return 0


def write_json(path: Path | None, result: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
