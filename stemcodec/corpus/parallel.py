"""prepare across processes: ranks of a launcher (accelerate launch, torchrun) and `--jobs N`.

Ranks split the songs by a stable hash of the song id (the same split on every machine and
every rerun, whatever order the files are found in); each rank writes its songs' shards and
entries into the shared cache folder, and rank 0 merges all ranks' entries into the manifest
at the end (over torch.distributed's gloo group, which the launcher's MASTER_ADDR/PORT set
up). Within a rank, `--jobs N` worker processes take the rank's songs one at a time, as they
come free. A song is written and renamed into place by whoever encodes it, so an interrupted
run resumes as a single process does: finished songs are skipped.
"""

from __future__ import annotations

import hashlib
import os
import queue as queues
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

# a rank waits for the slowest at the end: songs can take hours to separate
GATHER_TIMEOUT = timedelta(days=7)


def owner(song_id: str, world: int) -> int:
    """The rank that prepares `song_id`: a hash that Python's own (salted per process) is not."""
    return int(hashlib.sha1(song_id.encode("utf-8", "surrogateescape")).hexdigest()[:8], 16) % world


class Ranks:
    """This process's place among a launcher's processes (rank 0 of 1 when not launched)."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self._group = False

    @classmethod
    def from_env(cls) -> Ranks:
        """RANK, WORLD_SIZE and LOCAL_RANK as accelerate launch and torchrun set them."""
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1 or "MASTER_ADDR" not in os.environ:
            return cls()
        ranks = cls(int(os.environ.get("RANK", "0")), world,
                    int(os.environ.get("LOCAL_RANK", "0")))
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
            ranks._group = True
        return ranks

    def owns(self, song_id: str) -> bool:
        return owner(song_id, self.world) == self.rank

    def device(self, device: str) -> str:
        """cuda without an index: this process's own GPU on its machine."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world > 1 else device

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (on every rank)."""
        if self.world == 1:
            return [obj]
        import torch.distributed as dist
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self._group:
            import torch.distributed as dist
            dist.destroy_process_group()


@dataclass
class Outcome:
    """What became of one song in a worker: its entry, or why it was skipped; the warning
    lines it earned; what it cost (a corpus.prepare.Stats of this song alone)."""

    entry: Any | None = None
    skipped: str | None = None
    warnings: list[tuple[Path, str]] = field(default_factory=list)
    stats: Any = None


@dataclass
class WorkerSettings:
    """What a worker process needs to build its own Preparer (everything picklable)."""

    out: Path
    codec: str
    bandwidth: float | None
    codec_repo: Path | None
    slots: Any  # SlotSpec
    separator: str
    demucs_repo: Path | None
    device: str
    with_mix: bool
    threads: int


_worker: dict[str, Any] = {}  # the worker process's Preparer and progress queue


def _start_worker(settings: WorkerSettings, progress: Any) -> None:
    from ..codec import load_codec
    from ..memory import return_freed_memory
    from .prepare import Preparer
    return_freed_memory()
    torch.set_num_threads(settings.threads)
    codec = load_codec(settings.codec, settings.bandwidth, repository=settings.codec_repo,
                       device=settings.device)
    warnings: list[tuple[Path, str]] = []
    song = [""]

    def tell(done: float, total: float) -> None:
        progress.put((song[0], done, total))

    prep = Preparer(settings.out, codec, settings.slots, settings.separator,
                    settings.demucs_repo, settings.device, with_mix=settings.with_mix,
                    warn=lambda path, text: warnings.append((path, text)), progress=tell)
    _worker.update(prep=prep, warnings=warnings, song=song)


def _work(song: Any, root: Path) -> Outcome:
    from .prepare import Stats, attempt
    prep, warnings = _worker["prep"], _worker["warnings"]
    _worker["song"][0] = song.id
    warnings.clear()
    prep.stats = Stats()
    entry, reason = attempt(prep, song, root)
    return Outcome(entry, reason, list(warnings), prep.stats)


def run_jobs(songs: list[Any], root: Path, jobs: int, settings: WorkerSettings,
             progress: Callable[[str, float, float], None]) -> Iterator[tuple[Any, Outcome]]:
    """Prepare `songs` in `jobs` worker processes; yields (song, outcome) as each finishes,
    and tells `progress(song id, seconds done, in all)` inside long songs meanwhile."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")  # no forked copy of a loaded model
    told = context.Manager().Queue()
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker,
                             initargs=(settings, told)) as pool:
        pending: dict[Future, Any] = {pool.submit(_work, song, root): song for song in songs}
        try:
            while pending:
                finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                _drain(told, progress)
                for future in finished:
                    yield pending.pop(future), future.result()
        finally:
            for future in pending:
                future.cancel()


def _drain(told: Any, progress: Callable[[str, float, float], None]) -> None:
    while True:
        try:
            progress(*told.get_nowait())
        except queues.Empty:
            return
