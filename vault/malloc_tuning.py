"""glibc malloc settings for a serving process (issue 19).

A transfer allocates a fresh megabyte for every segment it reads, seals or opens, and
frees it moments later, often on another thread. With glibc's defaults each freed
megabyte went back to the kernel (the heap top trimmed, or a mapping unmapped) and the
next one faulted its 256 pages in again: ~100,000 minor faults and a quarter of a
download's CPU per GiB. Keeping a little freed memory per arena, and taking buffers of
this size from the arenas rather than from fresh mappings, ends that. Arenas are capped
so the memory kept stays bounded: at most MALLOC_ARENAS x TRIM_THRESHOLD_BYTES beyond
what is in use (the 2 GiB upload test holds the process to +64 MiB).

Only on glibc (mallopt found); elsewhere nothing changes. Never called at import time:
`datavault serve|api|worker` call it once, before the server starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Final

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3
_M_ARENA_MAX: Final = -8
# Free memory an arena keeps at its top instead of returning it: a few segments' worth.
TRIM_THRESHOLD_BYTES: Final = 8 * 1024 * 1024
# Allocations below this come from the arenas (a segment with its tag, and more).
MMAP_THRESHOLD_BYTES: Final = 4 * 1024 * 1024
# Arenas (threads share them beyond this): bounds the memory kept to 4 x 8 MiB.
MALLOC_ARENAS: Final = 4


def tune_malloc() -> bool:
    """Apply the settings above; False where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(
        mallopt(parameter, value) == 1
        for parameter, value in (
            (_M_ARENA_MAX, MALLOC_ARENAS),
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
        )
    )
