"""Parsing JSON a client sent, with the limits Python's parser leaves to the caller."""

from __future__ import annotations

import json
from typing import Any

from vault.errors import MalformedInput

# Python refuses to turn a string of more than 4,300 digits into an int (quadratic-time
# conversion, CVE-2020-10735) by raising ValueError from inside json.loads, which was a
# 500. No number the vault reads comes near it; the same bound, checked before int().
MAX_JSON_INTEGER_DIGITS = 4300


def parse_json(data: bytes) -> Any:
    """The JSON value in `data` (UTF-8), or MalformedInput (400) for anything else: bad
    syntax or encoding, NaN and Infinity (not JSON, RFC 8259), an integer longer than
    MAX_JSON_INTEGER_DIGITS, nesting deeper than the parser recurses."""
    try:
        return json.loads(data, parse_int=_bounded_int, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedInput("body is not valid JSON") from None
    except RecursionError:
        raise MalformedInput("body nests deeper than this vault parses") from None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        raise MalformedInput(f"a number in the body has more than {MAX_JSON_INTEGER_DIGITS} digits")
    return int(text)


def _refuse_constant(name: str) -> None:
    raise MalformedInput(f"{name} is not JSON")
