"""The suite. Compiled modules are cached (__pycache__, git-ignored) even where the
environment sets PYTHONDONTWRITEBYTECODE, as under `make test` (the Makefile unexports it):
without the cache every xdist worker rewrites and compiles every test module anew
(collecting the suite took 11.2 s of CPU per process, 3.4 s with the cache), and every
server, worker and CLI process the suite starts compiles what it imports. This package is
imported before its conftest, so the suite's own imports are cached too; the xdist workers
and every child process inherit the environment."""

import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
