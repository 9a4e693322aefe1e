"""A `datavault` command's memory is never written to a core file (red team 20):
checked in a child process, which then cannot raise its limit back either."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

_CHILD = """
import ctypes, json, resource
from vault.memory_off_disk import keep_memory_off_disk
keep_memory_off_disk()
raised = True
try:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
except (ValueError, OSError):
    raised = False
libc = ctypes.CDLL(None)
print(json.dumps({"core": resource.getrlimit(resource.RLIMIT_CORE),
                  "dumpable": libc.prctl(3, 0, 0, 0, 0), "raised": raised}))
"""


def test_a_command_turns_core_files_off_for_good_and_is_not_dumpable() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)

    def with_core_files_allowed() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))  # as a shell may hand it over

    child = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, check=True, timeout=30,
        preexec_fn=with_core_files_allowed,
    )  # fmt: skip
    seen = json.loads(child.stdout)
    assert seen["core"] == [0, 0]
    assert seen["dumpable"] == 0  # PR_GET_DUMPABLE
    if os.geteuid() != 0:  # only CAP_SYS_RESOURCE may raise a hard limit again
        assert seen["raised"] is False
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_CORE)  # ours untouched
