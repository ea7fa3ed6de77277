"""Run the training scripts as a user does: `python train/<name>.py ARGS` in a subprocess.

The scripts are loops, not modules: tests import what they need from the package
(stemcodec.training, stemcodec.codec) and run the scripts themselves here.
"""

import os
import subprocess
import sys
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
