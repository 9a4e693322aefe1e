"""A handle for key bytes that cannot be printed, logged or pickled by accident."""

from __future__ import annotations

import hmac
from typing import Any, NoReturn

from crypto import _primitives
from crypto.limits import KEY_SIZE


class SecretBytes:
    """Key material. ``repr``/``str`` are masked, pickling and copying out are refused.

    ``reveal()`` is meant for the crypto recipes only; code outside crypto/ should pass the
    handle along instead of the bytes.
    """

    __slots__ = ("_value",)

    def __init__(self, value: bytes | bytearray | memoryview) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError("SecretBytes takes bytes")
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretBytes(<{len(self._value)} bytes redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        # Constant time: a timing side channel must not reveal a common key prefix.
        return hmac.compare_digest(self._value, other._value)

    # Unhashable on purpose: hashing would put a key-derived value in dict internals.
    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("SecretBytes cannot be pickled")

    # Immutable, so a copy is the same object (copy.copy would otherwise hit __reduce_ex__).
    def __copy__(self) -> SecretBytes:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> SecretBytes:
        return self


def generate_key() -> SecretBytes:
    """A fresh random 256-bit key from the operating system's CSPRNG."""
    return SecretBytes(_primitives.random_bytes(KEY_SIZE))


def require_key(key: SecretBytes) -> bytes:
    """The bytes of a 256-bit key, or ValueError if ``key`` is not one."""
    if not isinstance(key, SecretBytes) or len(key) != KEY_SIZE:
        raise ValueError(f"expected a {KEY_SIZE}-byte SecretBytes key")
    return key.reveal()
