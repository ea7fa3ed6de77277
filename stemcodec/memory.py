"""Giving freed memory back to the system, so a long run's footprint is what it uses now.

glibc serves a large allocation from its heap once the mmap threshold has risen past it (the
threshold follows the largest block freed, up to 32 MB). Demucs's segments, the codec's
chunks and the stream buffers are tens of MB each and come and go in turns; from the heap,
what one stage freed stays resident beside what the next allocates (measured: prepare's peak
1.9 GB instead of 1.6 GB with the debug separator). A fixed threshold keeps such blocks
mmapped, returned on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
THRESHOLD = 1 << 20


def return_freed_memory() -> bool:
    """Fix glibc's mmap threshold at 1 MiB; False where there is no glibc (nothing done)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    except (OSError, AttributeError):
        return False
