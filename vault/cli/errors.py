"""How `datavault` commands fail: exit codes, and one error line a person or a script reads.

Without `--json` an error is one line `datavault: …` on stderr. With `--json` it is one
JSON object line `{"error": "…", "exit_code": N}` on stdout, where the command's output
would have been, so a script reads exactly one JSON line from stdout whatever happened
(a failed check's report carries the same two keys beside its findings). Messages name
settings, paths and ids, never a secret.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED_CHECK, EXIT_USAGE = 0, 1, 2


class CommandError(Exception):
    """A command cannot do what was asked; `message` is shown as it is."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ArgumentsRefused(CommandError):
    """The command line does not parse (argparse's own errors)."""

    def __init__(self, prog: str, problem: str, usage: str) -> None:
        super().__init__(f"{prog}: {problem}", EXIT_USAGE)
        self.usage = usage
        # What argparse itself would have printed after the usage line.
        self.argparse_line = f"{prog}: error: {problem}"


class CliParser(argparse.ArgumentParser):
    """argparse, except that a bad command line raises instead of printing and exiting,
    so `--json` can answer it in JSON too. Subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        raise ArgumentsRefused(self.prog, message, self.format_usage())


def report_error(message: str, exit_code: int, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"error": message, "exit_code": exit_code}), flush=True)
    else:
        print(f"datavault: {message}", file=sys.stderr, flush=True)
    return exit_code


def failed_check(data: dict[str, Any], message: str) -> dict[str, Any]:
    """A check's report with the error keys every `--json` failure carries."""
    return {**data, "error": message, "exit_code": EXIT_FAILED_CHECK}
