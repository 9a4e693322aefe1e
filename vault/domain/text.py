"""The one rule for text a client sends: every JSON string (keys too), query and path
parameter, console form field and subject reference passes `check_text` before the
vault stores it, looks it up or hashes it.

PostgreSQL refuses NUL in `text` (asyncpg raises CharacterNotInRepertoireError), and a
lone UTF-16 surrogate, which JSON can spell (`"\\ud800"`), has no UTF-8 encoding at all
(asyncpg and hashing raise UnicodeEncodeError): both used to surface as 500s, and
asyncpg's message quoted the offending text. Refused here instead, as 422 naming the
field, without repeating the value (it may be personal data or a secret).
"""

from __future__ import annotations

from vault.errors import InvalidInput

NUL = "\x00"


def check_text(value: str, field: str) -> str:
    """`value` unchanged if PostgreSQL and UTF-8 can hold it; else InvalidInput(field)."""
    if NUL in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} must be valid Unicode text (it holds a lone surrogate)", field=field
        ) from None
    return value


def check_json_texts(value: object) -> None:
    """`check_text` on every string and object key of a parsed JSON body, naming the field
    by its path (`note`, `retention.recording`, `categories[2]`). Iterative, so a body
    nested as deep as the parser allows cannot exhaust the stack here."""
    pending: list[tuple[object, str]] = [(value, "")]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            check_text(item, path or "(body)")
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(key, f"{path or '(body)'} (a key)")
                pending.append((child, f"{path}.{key}" if path else key))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
