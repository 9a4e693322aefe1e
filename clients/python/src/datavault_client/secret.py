"""`Secret`: a credential that does not print itself.

API keys, a new key's secret, a playback link's URL (its token is the credential) and a
webhook secret are held as `Secret`: its `repr` and `str` are masked, so a log line, a
traceback or a debugger shows `Secret('dv_abc…')` at most, and it refuses to be pickled
(into a cache, a queue, a crash dump). `reveal()` gives the value where it must go.
"""

from __future__ import annotations

import hmac
import re
from typing import Final, NoReturn

_GENERATED_PREFIX: Final = re.compile(r"dv_[a-z2-7]{12}_")


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError("a Secret is a non-empty string")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_public_part(self._value)}…')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret:
        return self

    def __deepcopy__(self, memo: object) -> Secret:
        return self


def _public_part(value: str) -> str:
    """A key the vault generated (`dv_<prefix>_<secret>`) shows its prefix, the public id
    that the vault's lists and logs show too; anything else shows nothing."""
    match = _GENERATED_PREFIX.match(value)
    return match.group(0) if match else ""
