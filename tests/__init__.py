"""The suite. Compiled modules are cached (__pycache__, git-ignored) even where the
environment sets PYTHONDONTWRITEBYTECODE, as under `make test` (the Makefile unexports it).
Python reads a cache that exists either way, but with the variable set none is ever written:
in a checkout where `make test` never ran, every run by hand had each xdist worker rewrite
and compile every test module anew (collecting the suite: 11.2 s of CPU per process, 3.4 s
cached) and each server, worker and CLI process the suite starts compile what it imports
(a whole run: ~80 s more CPU on 4 workers). This package is imported before its conftest,
so the suite's own imports are cached too; the workers and child processes inherit the
environment."""

import os
import sys

sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
