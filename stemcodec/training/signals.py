"""Stopping a training run on SIGINT (Ctrl-C) or SIGTERM (kill, a job scheduler, a launcher)
without losing work: the signal is only noted; the optimizer step in progress finishes, every
process agrees to stop after the same step, the trainer saves a checkpoint there (the state
a periodic checkpoint holds, so the resumed run goes on exactly as one never stopped) and
exits with one line and code 128 + the signal's number (130, 143).

    stop = StopSignals(accelerator)                 # just before the loop
    ...                                             # after each optimizer step:
        stopping = stop.requested()                 # the same answer on every process
        if stopping or due(step, save_every, last): last_good = save_checkpoint(...)
        if stopping or step >= last: break
    ...
    finally: stop.restore()
    if stopping and step < last: return stop.report(step, last_good, out)

A second signal while stopping changes nothing (a launcher that forwards a Ctrl-C the
terminal also delivered must not cut the checkpoint short); SIGKILL still ends the process,
and a checkpoint being written is never left half-written (run.save_checkpoint).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType

import torch
from accelerate import Accelerator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """While installed, SIGINT and SIGTERM set a flag instead of stopping the process."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.signum = 0  # 0: none yet
        self._previous = {s: signal.signal(s, self._note) for s in STOP_SIGNALS}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum:
            return
        self.signum = signum
        if self.accelerator.is_main_process:
            # os.write, not print: a handler may run while the main code is inside a print
            os.write(sys.stderr.fileno(), f"\n{signal.Signals(signum).name}: stopping after "
                     "this step, with a checkpoint\n".encode())

    def requested(self) -> bool:
        """Whether any process was signalled. Every process calls it once per step: a signal
        that reaches one rank only (or the ranks a step apart) stops them all at one step, so
        the checkpoint's collective save cannot wait on a rank that trains on."""
        if self.accelerator.num_processes > 1:
            flag = torch.tensor(self.signum, device=self.accelerator.device)
            self.signum = int(self.accelerator.reduce(flag, "max"))
        return self.signum != 0

    def restore(self) -> None:
        """The handlers from before (after the loop, a signal stops the process again)."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def report(self, step: int, checkpoint: Path | None, out: Path) -> int:
        """The one line a stopped run ends with, and its exit code."""
        if self.accelerator.is_main_process:
            print(f"stopped by {signal.Signals(self.signum).name} at step {step}; checkpoint "
                  f"{checkpoint}; the same command (or out={out} alone) resumes",
                  file=sys.stderr, flush=True)
        return 128 + self.signum


def quiet_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: a worker leaves the stop signals to the trainer, which ends
    it with its loader; a worker killed by a signal sent to the whole process group (Ctrl-C,
    a scheduler) would otherwise fail the loader before the checkpoint is written."""
    for s in STOP_SIGNALS:
        signal.signal(s, signal.SIG_IGN)
