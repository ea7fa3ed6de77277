"""Throughput of `stemcodec prepare` with `--jobs 1` against `--jobs N`, in the same run.

    python bench/prepare_throughput.py                       # 8 songs of 30 s, jobs 1 and 2
    python bench/prepare_throughput.py --songs 16 --seconds 60 --jobs 1 2 4 --json t.json

Writes the songs once (bench/prepare_memory.py's synthetic songs, each with its own seed),
then prepares them from scratch with each job count as a user would (a subprocess,
OMP_NUM_THREADS=1 per job, the `debug` separator and codec unless told otherwise), and
prints the wall time, the audio seconds per wall second, and the ratio against the first
job count. The caches' token shards must be equal whatever the job count: the bench says so.
An untimed run on one short song goes first: the first prepare of a session pays for cold
imports and page cache (measured: --jobs 1 took 125 s first and 86 s after --jobs 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_memory import ROOT, write_song  # noqa: E402  (a sibling script, not a package)


def tokens_digest(cache: Path) -> str:
    """One digest over the cache's token files (names and bytes), manifest left out: it
    records times and job counts."""
    h = hashlib.sha1()
    for path in sorted(p for p in cache.rglob("*") if p.is_file() and p.suffix in
                       (".safetensors", ".npy", ".pt")):
        h.update(str(path.relative_to(cache)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def prepare(songs: Path, cache: Path, jobs: int, extra: list[str]) -> float:
    cmd = [sys.executable, "-m", "stemcodec.prepare", str(songs), "--out", str(cache),
           "--overwrite", "--jobs", str(jobs), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"prepare --jobs {jobs} failed:\n{proc.stderr[-2000:]}")
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--songs", type=int, default=8)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each song")
    p.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--separator", default="debug")
    p.add_argument("--codec", default="debug")
    p.add_argument("--work", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="prepare-throughput-"))
    songs = work / "songs"
    for i in range(args.songs):
        write_song(songs / f"song{i:03d}.ogg", args.seconds, seed=i)
    write_song(work / "warmup" / "song.ogg", 2.0, seed=10_000)
    audio = args.songs * args.seconds
    extra = ["--codec", args.codec, "--separator", args.separator]
    print(f"prepare {args.songs} songs x {args.seconds:g} s ({audio:g} s of audio), "
          f"--separator {args.separator} --codec {args.codec}, cpus {os.cpu_count()}")
    prepare(work / "warmup", work / "cache-warmup", 1, extra)  # untimed
    results, base, digest = [], None, None
    for jobs in args.jobs:
        cache = work / f"cache-jobs{jobs}"
        took = prepare(songs, cache, jobs, extra)
        base = base or took
        d = tokens_digest(cache)
        digest = digest or d
        results.append({"jobs": jobs, "seconds": took, "audio_per_second": audio / took,
                        "speedup": base / took, "same_tokens": d == digest})
        print(f"--jobs {jobs}: {took:7.1f} s, {audio / took:5.2f} s of audio per s, "
              f"{base / took:4.2f}x of --jobs {args.jobs[0]}; tokens "
              f"{'the same' if d == digest else 'DIFFERENT'}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"songs": args.songs, "seconds": args.seconds,
                                         "results": results}, indent=1))
    return 0 if all(r["same_tokens"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
