"""Peak memory of `stemcodec prepare` against the length of a song.

    python bench/prepare_memory.py --seconds 60 600 [--separator debug] [--format ogg]
    python bench/prepare_memory.py --seconds 7200 --instrument piano        # no separation
    python bench/prepare_memory.py --seconds 60 --separator htdemucs_6s     # real size, random

For each length it writes one synthetic song (tones that change every second, a little
noise; 44.1 kHz stereo, OGG Vorbis or FLAC, written block by block), runs prepare on it in
a subprocess as a user would (OMP_NUM_THREADS=1), and reports that process's peak resident
memory (getrusage of the child, ru_maxrss) with its run time. `--separator htdemucs_6s`
builds the real-size HTDemucs 6-source architecture with random weights and writes it in
demucs 4.1's safetensors format, so the real loading path runs it (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
RATE = 44100
# The released htdemucs configuration as demucs's training grid sets it (demucs/grids/mmi.py:
# dconv_mode 3, depth 4, 5 transformer layers, bottom_channels 512) over HTDemucs's defaults
# (48 channels, nfft 4096), with the released segment of 7.8 s.
HTDEMUCS_KWARGS = {"dconv_mode": 3, "depth": 4, "t_layers": 5, "bottom_channels": 512,
                   "samplerate": RATE, "audio_channels": 2}
HTDEMUCS_SEGMENT = Fraction(39, 5)


def write_song(path: Path, seconds: float, channels: int = 2, seed: int = 0) -> Path:
    """A synthetic song, generated and written a second at a time (never held whole)."""
    rng = np.random.default_rng(seed)
    fmt = {".ogg": "OGG", ".flac": "FLAC", ".wav": "WAV"}[path.suffix]
    subtype = {"OGG": "VORBIS", "FLAC": "PCM_16", "WAV": "PCM_16"}[fmt]
    phase = np.zeros(3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(path, "w", RATE, channels, subtype, format=fmt) as out:
        left = int(seconds * RATE)
        while left > 0:
            n = min(RATE, left)
            freqs = 110.0 * 2 ** (rng.integers(0, 24, 3) / 12)  # a chord a second
            t = np.arange(n) / RATE
            x = sum(0.15 * np.sin(phase[i] + 2 * np.pi * f * t) for i, f in enumerate(freqs))
            phase = (phase + 2 * np.pi * freqs * n / RATE) % (2 * np.pi)
            x = x + 0.02 * rng.standard_normal(n)
            pan = [1.0, 0.7][:channels]
            out.write(np.stack([x * p for p in pan], axis=1).astype(np.float32))
            left -= n
    return path


def real_size_htdemucs(folder: Path) -> Path:
    """htdemucs_6s's architecture with random weights, as `<sig>.safetensors` + its bag yaml
    (the signature is the official one: a folder made here stands for the real weights)."""
    import torch
    from demucs.htdemucs import HTDemucs
    from safetensors.torch import save_file

    from stemcodec.separate import SIX_SOURCES
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = HTDemucs(SIX_SOURCES, segment=HTDEMUCS_SEGMENT, **HTDEMUCS_KWARGS)
    kwargs = {**HTDEMUCS_KWARGS, "segment": {"_type": "fraction",
                                             "numerator": HTDEMUCS_SEGMENT.numerator,
                                             "denominator": HTDEMUCS_SEGMENT.denominator}}
    meta = {"klass": "demucs.htdemucs.HTDemucs", "args": json.dumps([SIX_SOURCES]),
            "kwargs": json.dumps(kwargs)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "5c90dfd2.safetensors"), metadata=meta)
    (folder / "htdemucs_6s.yaml").write_text("models: ['5c90dfd2']\n")
    params = sum(p.numel() for p in model.parameters())
    print(f"htdemucs_6s (random weights): {params / 1e6:.1f}M parameters in {folder}",
          flush=True)
    return folder


def measure(song: Path, cache: Path, extra: list[str], timeout: float) -> dict:
    """Run prepare on `song`; its peak RSS (of the process and what it waited for) and time."""
    cmd = [sys.executable, "-m", "stemcodec.prepare", str(song.parent), "--out", str(cache),
           "--overwrite", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                proc.kill()  # ours: the prepare run started just above
                timed_out = True
            time.sleep(0.2)
        took = time.perf_counter() - start
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").replace("\r", "\n").splitlines()
    summary = next((ln for ln in reversed(lines) if ln.startswith("prepared ")), "")
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "seconds": took,
            "exit": os.waitstatus_to_exitcode(status), "timed_out": timed_out,
            "summary": summary or (lines[-1] if lines else "")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, nargs="+", default=[60.0, 600.0],
                   help="song lengths to measure (default: 60 600)")
    p.add_argument("--format", choices=["ogg", "flac", "wav"], default="ogg")
    p.add_argument("--separator", default="debug",
                   help="debug (default), or htdemucs_6s: the real size, random weights")
    p.add_argument("--instrument", default=None,
                   help="prepare the song as one stem of this instrument: no separation")
    p.add_argument("--codec", default="debug")
    p.add_argument("--work", type=Path, default=None, help="folder for the songs and caches")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per run")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="prepare-memory-"))
    extra = ["--codec", args.codec]
    if args.instrument:
        extra += ["--instrument", args.instrument]
    else:
        extra += ["--separator", args.separator]
        if args.separator == "htdemucs_6s":
            extra += ["--demucs-repo", str(real_size_htdemucs(work / "htdemucs_6s"))]
    mode = f"--instrument {args.instrument}" if args.instrument else f"--separator {args.separator}"
    print(f"prepare {mode} --codec {args.codec}, {args.format}, in {work}", flush=True)
    print(f"{'length':>10}  {'peak RSS':>10}  {'run':>8}  {'speed':>7}", flush=True)
    results = []
    for seconds in args.seconds:
        song = write_song(work / f"{seconds:g}s" / f"song.{args.format}", seconds)
        result = measure(song, work / f"{seconds:g}s-cache", extra, args.timeout)
        result["length_s"] = seconds
        results.append(result)
        note = " (timed out)" if result["timed_out"] else (
            "" if result["exit"] == 0 else f" (exit {result['exit']})")
        print(f"{seconds:>9g}s  {result['peak_rss_mb']:>8.0f}MB  {result['seconds']:>7.0f}s  "
              f"{seconds / result['seconds']:>6.2f}x{note}", flush=True)
        print(f"            {result['summary']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"mode": mode, "format": args.format,
                                         "codec": args.codec, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
