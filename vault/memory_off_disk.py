"""A vault process's memory never written to disk by a crash.

Every `datavault` command holds key material at some point (the root key, tenant KEKs,
unwrapped data keys) and a serving one holds plaintext in flight. A crash (a segfault in
a C extension, an abort) would write all of it to a core file wherever the host's core
pattern points, outside every deletion guarantee. So each command, before it opens
anything: sets its core-file limit to 0, soft and hard (a shell or container runtime may
hand it a raised one, and a child it starts inherits the lowered one), and, on Linux,
marks itself not dumpable, which also keeps other processes of the same user from
reading its memory through ptrace or /proc (red team 20). Profiling a vault process
(py-spy, perf) then takes root or CAP_SYS_PTRACE.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from typing import Final

_PR_SET_DUMPABLE: Final = 4  # linux/prctl.h


def keep_memory_off_disk() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
