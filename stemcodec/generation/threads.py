"""How many CPU threads generation runs on: the fastest for this model, this many slots and
this machine, measured once and remembered.

Why measure: a step of the mini model is a few milliseconds of small matrix products, and on
a small CPU torch's default (one thread per core) is slower than one thread (issue 14: 1.9x
against 2.6x real time for 4 slots on 2 cores); a larger model or more slots turns it round.
No rule of thumb holds across machines, so the first generation on a CPU times a few steps
with 1, 2 and all cores and keeps the fastest.

Why remember: results differ in the last bits with the thread count (the reductions' order),
and a seed must give the same piece on the same machine every time; a choice re-measured at
every call could flip on a busy machine. The choice is stored per machine, torch version,
model shape and slot count in `threads.json` under the cache folder ($STEMCODEC_CACHE, else
$XDG_CACHE_HOME/stemcodec, else ~/.cache/stemcodec); delete the file to measure again, or
pass a number (`--threads N`, `threads=N`) to skip all this.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from ..files import temporary_beside

FILE = "threads.json"


def cache_folder() -> Path:
    if os.environ.get("STEMCODEC_CACHE"):
        return Path(os.environ["STEMCODEC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stemcodec"


def cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def candidates(available: int | None = None) -> list[int]:
    """1, 2 and all cores, each once."""
    n = cores() if available is None else available
    return sorted({1, min(2, n), n})


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(what: str) -> str:
    """`what` (model shape, slots, quantisation) on this CPU, core count and torch."""
    return f"{cpu_name()} x{cores()} | torch {torch.__version__} | {what}"


def fastest(measure: Callable[[], None], options: Sequence[int], trials: int = 2) -> tuple[
        int, dict[int, float]]:
    """The thread count among `options` under which `measure()` runs fastest (best of
    `trials`, after one untimed warm-up each), and every count's seconds."""
    before = torch.get_num_threads()
    seconds: dict[int, float] = {}
    try:
        for n in options:
            torch.set_num_threads(n)
            measure()
            best = float("inf")
            for _ in range(trials):
                start = time.perf_counter()
                measure()
                best = min(best, time.perf_counter() - start)
            seconds[n] = best
    finally:
        torch.set_num_threads(before)
    return min(seconds, key=seconds.get), seconds


def remembered(key: str, folder: Path | None = None) -> int | None:
    path = (folder or cache_folder()) / FILE
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None  # none yet, or unreadable: measured again and rewritten
    threads = entry.get("threads") if isinstance(entry, dict) else None
    return threads if isinstance(threads, int) and 1 <= threads <= cores() else None


def remember(key: str, threads: int, seconds: dict[int, float],
             folder: Path | None = None) -> None:
    """Adds the choice to threads.json (written beside and renamed); a read-only cache
    only costs the measurement next time."""
    folder = folder or cache_folder()
    path = folder / FILE
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            table = json.loads(path.read_text())
            table = table if isinstance(table, dict) else {}
        except (OSError, ValueError):
            table = {}
        table[key] = {"threads": threads, "seconds": {str(n): s for n, s in seconds.items()}}
        fd, tmp = temporary_beside(path)
        with os.fdopen(fd, "w") as f:
            json.dump(table, f, indent=1)
        os.replace(tmp, path)
    except OSError:
        pass


def choose(what: str, measure: Callable[[], None], folder: Path | None = None) -> int:
    """The remembered thread count for `what` on this machine, else the fastest measured
    (and remembered)."""
    key = machine_key(what)
    threads = remembered(key, folder)
    if threads is None:
        options = candidates()
        if len(options) == 1:
            return options[0]
        threads, seconds = fastest(measure, options)
        remember(key, threads, seconds, folder)
    return threads


@contextlib.contextmanager
def using(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside, restored after (None: unchanged)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
