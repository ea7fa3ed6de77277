"""Does `--stream -` play without a gap? A listener's view of the WAV pipe.

    python bench/stream_pipe.py                                   # 60 s of vocals-free:4
    python bench/stream_pipe.py --slots solo-piano --duration 30 --threads 1 --json s.json

Runs `python -m stemcodec.generate --stream -` as a user would (a subprocess writing WAV to a
pipe) and reads the pipe as a player does: playback starts when the first audio arrives
(after `--preroll` seconds of it, default none) and then needs `rate` samples every second.
Every time the player reaches the end of what has arrived, it stalls until more comes: a gap
a listener hears. Prints the time to first audio (from the generator's own line: after the
model is loaded; and from the process start), the gaps (count, total and longest), and the
real-time factor the generator reports. Run it on an idle machine: another job's load is a
gap here too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def gaps(arrivals: list[tuple[float, int]], rate: int, preroll: float = 0.0) -> dict:
    """`arrivals`: (time in s, samples in that read) in order. The player starts once
    `preroll` s of audio are in (at the first arrival by default), plays at `rate`, and stalls
    whenever it has played all that arrived; returns the stalls (count, total s, longest s)."""
    have, played, start, clock, stalls = 0, 0, None, 0.0, []
    for t, n in arrivals:
        if start is not None:
            runs_out = clock + (have - played) / rate  # when the player reaches the end
            if t > runs_out + 1e-4:  # silent from runs_out to t
                stalls.append(t - runs_out)
                played, clock = have, t
        have += n
        if start is None and have >= preroll * rate:
            start = clock = t
    return {"gaps": len(stalls), "gap_s": sum(stalls),
            "longest_gap_s": max(stalls, default=0.0), "start_s": start}


def read_wav_header(pipe) -> tuple[int, int, bytes]:
    """(sample rate, bytes per frame, what came after the header) of a streamed WAV."""
    head = b""
    while b"data" not in head[12:] or len(head) < head.find(b"data", 12) + 8:
        more = pipe.read1(4096) if hasattr(pipe, "read1") else pipe.read(4096)
        if not more:
            raise SystemExit("the generator wrote no WAV header; see its error above")
        head += more
    fmt = head.find(b"fmt ")
    channels, rate = struct.unpack("<HI", head[fmt + 10: fmt + 16])
    bits = struct.unpack("<H", head[fmt + 22: fmt + 24])[0]
    data = head.find(b"data", 12) + 8
    return rate, channels * bits // 8, head[data:]


def run(args: argparse.Namespace) -> dict:
    command = [sys.executable, "-m", "stemcodec.generate", "--slots", args.slots,
               "--duration", str(args.duration), "--seed", str(args.seed), "--stream", "-"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.checkpoint:
        command += ["--checkpoint", args.checkpoint]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    rate, frame_bytes, rest = read_wav_header(proc.stdout)
    arrivals, carry = [], len(rest)
    if carry:
        arrivals.append((time.perf_counter() - started, carry // frame_bytes))
        carry %= frame_bytes
    while True:
        block = proc.stdout.read1(1 << 16)
        if not block:
            break
        carry += len(block)
        arrivals.append((time.perf_counter() - started, carry // frame_bytes))
        carry %= frame_bytes
    err = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise SystemExit(f"the generator failed:\n{err.strip()[-2000:]}")
    line = re.search(r"([\d.]+)x real time on (\S+).*first audio after ([\d.]+) s", err)
    arrivals = [a for a in arrivals if a[1] > 0]
    result = {"slots": args.slots, "duration_s": args.duration, "seed": args.seed,
              "rate": rate, "samples": sum(n for _, n in arrivals),
              "first_audio_after_load_s": float(line.group(3)) if line else None,
              "first_audio_from_start_s": arrivals[0][0] if arrivals else None,
              "rtf_stream": float(line.group(1)) if line else None,
              "threads": args.threads or "auto", "preroll_s": args.preroll,
              **gaps(arrivals, rate, args.preroll)}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", default="vocals-free:4")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="default: the CLI's (auto)")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--preroll", type=float, default=0.0,
                        help="seconds of audio the player waits for before it starts")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args)
    print(f"{args.slots}, {args.duration:g} s: first audio {result['first_audio_after_load_s']} "
          f"s after load ({result['first_audio_from_start_s']:.2f} s from the process start); "
          f"gaps {result['gaps']} (total {result['gap_s']:.3f} s, longest "
          f"{result['longest_gap_s']:.3f} s); {result['rtf_stream']}x real time")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
