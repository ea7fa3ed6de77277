"""The small helpers of stemcodec.files: what a user reads in a summary, and file modes."""

import os
import stat

from stemcodec.files import speed, temporary_beside


def test_speed_never_prints_zero_for_a_slow_run():
    assert speed(3.0, 10.0) == "0.3x"
    assert speed(1.0, 300.0) == "0.0033x"
    assert speed(30.0, 10.0) == "3x"
    assert speed(300.0, 10.0) == "30x"


def test_temporary_files_get_the_umasks_mode(tmp_path):
    old = os.umask(0o027)
    try:
        fd, tmp = temporary_beside(tmp_path / "shard.npy")
        os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp).st_mode) == 0o640
    assert os.path.dirname(tmp) == str(tmp_path)
