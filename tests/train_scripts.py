"""Run the training scripts as a user does: `python train/<name>.py ARGS` in a subprocess.

The scripts are loops, not modules: tests import what they need from the package
(stemcodec.training, stemcodec.codec) and run the scripts themselves here.
"""

import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    """The finished process (returncode, stdout, stderr) of train/<name>.py."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run([sys.executable, str(ROOT / "train" / f"{name}.py"), *map(str, args)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def ok(result: subprocess.CompletedProcess) -> bool:
    """Exit code 0; else the script's stderr is shown with the failure."""
    assert result.returncode == 0, result.stderr[-3000:]
    return True


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The `error: ...` line a user error ends with (exit code 2, no traceback)."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr[-3000:]
    return line


def start_script(name: str, *args: str, launcher: Sequence[str] = ()) -> subprocess.Popen:
    """train/<name>.py ARGS running, in a process group of its own (as a terminal starts a
    command, so a signal to the group is a Ctrl-C); `launcher`: the command in front of the
    script (default: this Python). Its output goes to files, which never fill up and block
    it as a pipe would; finish() reads them."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    stdout, stderr = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen([*(launcher or [sys.executable]), str(ROOT / "train" / f"{name}.py"),
                                *map(str, args)], cwd=ROOT, env=env, stdout=stdout,
                               stderr=stderr, text=True, start_new_session=True)
    process.outputs = (stdout, stderr)
    return process


def finish(process: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    """Wait for a started script; the finished process, as run_script gives it."""
    process.wait(timeout=timeout)
    texts = []
    for handle in process.outputs:
        handle.seek(0)
        texts.append(handle.read())
        handle.close()
    return subprocess.CompletedProcess(process.args, process.returncode, *texts)


def logged_step(out: Path) -> int:
    """The last step in OUT/log.jsonl so far (0 before the first; a line being written is
    skipped)."""
    try:
        lines = (out / "log.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return 0
    steps = [0]
    for line in lines:
        try:
            steps.append(json.loads(line)["step"])
        except (ValueError, KeyError):
            pass
    return max(steps)


def signal_at(process: subprocess.Popen, out: Path, step: int, signum: int,
              group: bool = False) -> subprocess.CompletedProcess:
    """Send `signum` once the run has logged `step` (to its whole process group: what a
    Ctrl-C in a terminal does), then wait for it to exit; the finished process."""
    deadline = time.monotonic() + 300
    while logged_step(out) < step:
        if process.poll() is not None:
            raise AssertionError(finish(process).stderr[-3000:])
        assert time.monotonic() < deadline, "the run never reached the step"
        time.sleep(0.01)
    if group:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    return finish(process)


def ctrl_c_in_a_terminal(name: str, *args: str, out: Path, step: int,
                         launcher: Sequence[str] = ()) -> tuple[int, str]:
    """train/<name>.py ARGS run on a pseudo-terminal as a shell runs a command (its
    foreground process group), a Ctrl-C typed once the run has logged `step`; the exit code
    and everything the terminal showed."""
    command = [*(launcher or [sys.executable]), str(ROOT / "train" / f"{name}.py"), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, on the terminal
        os.chdir(ROOT)
        os.execve(command[0], command, env)
    shown, typed, deadline = b"", False, time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.02)[0]:
                try:
                    shown += os.read(fd, 65536)
                except OSError:  # the terminal closed: the command has exited
                    break
            if not typed and logged_step(out) >= step:
                os.write(fd, b"\x03")
                typed = True
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    assert typed, "the run never reached the step"
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace").replace("\r", "")
