"""Reading the vault's JSON answers into typed values, strictly where the API promises a
field and leniently about fields it adds later (API.md welcomes additions)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from datavault_client.errors import UnexpectedResponse


def parse_time(value: str) -> datetime:
    """An RFC 3339 time as the vault writes it (UTC, `Z`)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("a time without a time zone")
    return parsed


class Fields:
    """The members of one JSON object, read by type; `what` names the object in errors
    (never a value: a value may be a subject reference)."""

    def __init__(self, data: object, what: str) -> None:
        if not isinstance(data, Mapping):
            raise UnexpectedResponse(f"{what}: expected a JSON object")
        self._data: Mapping[str, Any] = data
        self._what = what

    def raw(self) -> dict[str, Any]:
        return dict(self._data)

    def _get(self, name: str, types: type | tuple[type, ...], *, optional: bool) -> Any:
        value = self._data.get(name)
        if value is None:
            if optional:
                return None
            raise UnexpectedResponse(f"{self._what}: `{name}` is missing")
        # bool is an int in Python; the API never means one for the other.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            raise UnexpectedResponse(f"{self._what}: `{name}` has the wrong type")
        return value

    def text(self, name: str) -> str:
        value: str = self._get(name, str, optional=False)
        return value

    def opt_text(self, name: str) -> str | None:
        value: str | None = self._get(name, str, optional=True)
        return value

    def integer(self, name: str) -> int:
        value: int = self._get(name, int, optional=False)
        return value

    def opt_integer(self, name: str) -> int | None:
        value: int | None = self._get(name, int, optional=True)
        return value

    def flag(self, name: str) -> bool:
        value: bool = self._get(name, bool, optional=False)
        return value

    def opt_flag(self, name: str, default: bool = False) -> bool:
        value: bool | None = self._get(name, bool, optional=True)
        return default if value is None else value

    def time(self, name: str) -> datetime:
        return self._time(self.text(name), name)

    def opt_time(self, name: str) -> datetime | None:
        value = self.opt_text(name)
        return None if value is None else self._time(value, name)

    def _time(self, value: str, name: str) -> datetime:
        try:
            return parse_time(value)
        except ValueError:
            raise UnexpectedResponse(f"{self._what}: `{name}` is not an RFC 3339 time") from None

    def items(self, name: str) -> list[Any]:
        value: list[Any] | None = self._get(name, list, optional=True)
        return [] if value is None else value

    def opt_items(self, name: str) -> list[Any] | None:
        value: list[Any] | None = self._get(name, list, optional=True)
        return value

    def strings(self, name: str) -> list[str]:
        items = self.items(name)
        if not all(isinstance(item, str) for item in items):
            raise UnexpectedResponse(f"{self._what}: `{name}` is not a list of strings")
        return items

    def opt_strings(self, name: str) -> list[str] | None:
        return None if self._data.get(name) is None else self.strings(name)

    def objects(self, name: str) -> list[Fields]:
        return [Fields(item, f"{self._what}.{name}[]") for item in self.items(name)]

    def object(self, name: str) -> Fields:
        return Fields(self._get(name, Mapping, optional=False), f"{self._what}.{name}")

    def opt_object(self, name: str) -> Fields | None:
        value = self._get(name, Mapping, optional=True)
        return None if value is None else Fields(value, f"{self._what}.{name}")

    def mapping(self, name: str) -> dict[str, Fields]:
        value = self._get(name, Mapping, optional=True) or {}
        return {key: Fields(item, f"{self._what}.{name}.{{}}") for key, item in value.items()}


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)
