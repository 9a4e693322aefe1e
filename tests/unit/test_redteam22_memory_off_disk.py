"""Red team 22: `keep_memory_off_disk` (05bc048) as `vault.cli.main` runs it.

What held: a library user calling `main` in its own process gets what a command gets, on
purpose (core files off for good, not dumpable), even when the command then fails (a
database nobody listens on); a process the command starts (the embedded PostgreSQL is
the only one the vault starts) inherits the core-file limit of 0 through exec, and cannot
raise it. Noted: exec makes a child dumpable again (the kernel resets the flag), so the
limit, not the flag, is what keeps a child's memory off disk; the vault starts no child
that holds keys.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

_CALLER = """
import ctypes, json, resource, subprocess, sys
from vault.cli import main
code = main(["tenant", "list", "--database-url", "postgresql://127.0.0.1:1/none"])
libc = ctypes.CDLL(None)
child = subprocess.run([sys.executable, "-c", '''
import ctypes, json, resource
raised = True
try:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY,) * 2)
except (ValueError, OSError):
    raised = False
print(json.dumps({"core": resource.getrlimit(resource.RLIMIT_CORE), "raised": raised,
                  "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)}))
'''], capture_output=True, text=True, check=True)
print(json.dumps({"code": code, "core": resource.getrlimit(resource.RLIMIT_CORE),
                  "dumpable": libc.prctl(3, 0, 0, 0, 0), "child": json.loads(child.stdout)}))
"""


def test_held_main_in_a_callers_process_and_its_children_keep_core_files_off() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)

    def with_core_files_allowed() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))

    ran = subprocess.run(
        [sys.executable, "-c", _CALLER], capture_output=True, text=True, check=True,
        timeout=30, preexec_fn=with_core_files_allowed,
    )  # fmt: skip
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["code"] != 0  # the command failed: nothing listens there
    assert seen["core"] == [0, 0]
    assert seen["dumpable"] == 0
    assert seen["child"]["core"] == [0, 0]
    if os.geteuid() != 0:
        assert seen["child"]["raised"] is False
    assert seen["child"]["dumpable"] == 1  # reset by exec: the limit is what holds
