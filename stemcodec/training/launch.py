"""`stemcodec launch` (or `python -m stemcodec.launch`): `accelerate launch` with the same
options, that stops and fails the way the trainers do, without a launcher traceback.

    stemcodec launch train/train.py --config configs/mini.yaml out=runs/mini
    ACCELERATE_USE_CPU=true stemcodec launch --multi_gpu --num_processes 2 train/train.py ...

What `accelerate launch` itself does (accelerate 1.x, measured): a trainer's one-line error
(exit code 2) comes wrapped in a CalledProcessError traceback (`--quiet` drops it for one
process, with exit code 1) or, with several processes, torch's ChildFailedError report; a
Ctrl-C is a KeyboardInterrupt traceback from the launcher, which exits at once while the
trainer is still writing its checkpoint; a SIGTERM sent to the launcher kills it and leaves
the trainer training on, orphaned. Here, for one process, the launcher passes SIGTERM (and a
SIGINT that was not a terminal's Ctrl-C, which reaches the trainer itself) on to the trainer
and waits for it; with several, torch's launcher already does (and waits 30 s before it
kills them). The launcher then exits with the trainer's code
(2: a one-line error, 130 / 143: stopped by SIGINT / SIGTERM with a checkpoint), silently:
the trainer has said what happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

import psutil

from .signals import STOP_SIGNALS


def _forward(signum: int, frame: FrameType | None) -> None:
    """Pass the signal to the launcher's own children (the trainer; not the trainer's data
    workers), which stop with a checkpoint. Before there is a child, stop the launch."""
    children = psutil.Process().children()
    if not children:
        raise KeyboardInterrupt
    if signum == signal.SIGINT and _from_terminal():
        return  # a Ctrl-C reached the trainer itself: one signal, as without a launcher
    for child in children:
        try:
            child.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


def _from_terminal() -> bool:
    """Whether this process is in its terminal's foreground process group, where a Ctrl-C
    goes to every process (the trainer, in the same group, too)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY)
    except OSError:  # no controlling terminal
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def exit_code(returncode: int | None) -> int:
    """A child's return code as this process's exit code (killed by signal N: 128 + N, with
    a line, since the child could not say anything)."""
    if returncode is None:
        return 1
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() \
            else f"signal {-returncode}"
        print(f"error: the training process was killed by {name}", file=sys.stderr)
        return 128 - returncode
    return returncode


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    parser = launch_command_parser()
    parser.prog = "stemcodec launch"
    args = parser.parse_args(argv)
    previous = {s: signal.signal(s, _forward) for s in STOP_SIGNALS}
    try:
        launch_command(args)
    except subprocess.CalledProcessError as exc:  # one process
        return exit_code(exc.returncode)
    except ChildFailedError as exc:  # several: the first that failed
        return exit_code(exc.get_first_failure()[1].exitcode)
    except SignalException as exc:  # several, signalled: torch's launcher stopped them
        return 128 + int(exc.sigval)
    except KeyboardInterrupt:  # before the trainer started
        return 130
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
