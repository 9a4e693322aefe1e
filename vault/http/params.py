"""Parsing of path and query parameters into typed values, with 4xx errors."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime

from vault.errors import InvalidInput, NotFound


def path_uuid(value: str) -> uuid.UUID:
    # A malformed id names nothing: 404, exactly like an unknown or foreign one.
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("no such resource") from None


def parse_time(name: str, value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be an RFC 3339 date-time string", field=name)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be an RFC 3339 date-time", field=name) from None
    if parsed.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone offset (e.g. Z)", field=name)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} is out of range", field=name) from None


def encode_cursor_parts(*parts: str) -> str:
    """Cursors are opaque to clients: a position they must hand back unchanged."""
    text = "\n".join(("v1", *parts))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor_parts(value: str | None, count: int) -> list[str] | None:
    if value is None or value == "":
        return None
    try:
        text = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this vault issued", field="cursor") from None
    version, *parts = text.split("\n")
    if version != "v1" or len(parts) != count:
        raise InvalidInput("cursor is not one this vault issued", field="cursor")
    return parts


def encode_cursor(position: int) -> str:
    return encode_cursor_parts(str(position))


def decode_cursor(value: str | None) -> int | None:
    parts = decode_cursor_parts(value, 1)
    if parts is None:
        return None
    if not parts[0].isdigit():
        raise InvalidInput("cursor is not one this vault issued", field="cursor")
    return int(parts[0])


def query_int(name: str, value: str | None, *, minimum: int, maximum: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", field=name) from None
    if not minimum <= number <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}", field=name)
    return number
