"""Dates and times on console pages, in the page's language: shown, and typed into fields.

A browser's own date picker (`<input type="datetime-local">`) follows the browser's
language, not the page's, so a Dutch page in an English browser showed mm/dd/yyyy. The
console's date fields are text fields instead, in the page's language's order: English
pages ISO (2025-03-01 14:30), Dutch pages day first (01-03-2025 14:30), both in UTC as
their labels say. A field accepts its language's form with or without the time, and the
ISO form on any page (with a `T`, seconds or an offset too), so a pasted API time works.
"""

from __future__ import annotations

from datetime import UTC, datetime

from vault.errors import InvalidInput
from vault.http.params import parse_time

# (date and time, date only): what a field of each language shows and accepts.
_FORMATS = {
    "en": ("%Y-%m-%d %H:%M", "%Y-%m-%d"),
    "nl": ("%d-%m-%Y %H:%M", "%d-%m-%Y"),
}
# A typed value longer than this is not a date (the longest form, with an offset, is 25).
MAX_FIELD_LENGTH = 40


def _formats(language: str) -> tuple[str, str]:
    """The language's layouts; English's (ISO) are accepted on every page too."""
    return _FORMATS.get(language, _FORMATS["en"])


def format_time(value: datetime | None, language: str) -> str:
    """A time as pages show it: in UTC, in the language's order."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime(_formats(language)[0]) + " UTC"


def field_value(value: datetime | None, language: str) -> str:
    """A time as a field holds it (no zone: the label says UTC)."""
    return "" if value is None else value.astimezone(UTC).strftime(_formats(language)[0])


def parse_field(name: str, text: str, language: str) -> datetime | None:
    """What was typed into date field `name` on a page in `language`, as UTC; None when
    it was left empty. InvalidInput (naming the field) when it is not a date."""
    text = " ".join(text.split())
    if not text:
        return None
    if len(text) <= MAX_FIELD_LENGTH:
        for layout in (*_formats(language), *_FORMATS["en"]):
            try:
                return datetime.strptime(text, layout).replace(tzinfo=UTC)
            except ValueError:
                pass
        if text[:4].isdigit() and text[4:5] == "-":  # ISO, year first: unambiguous
            iso = text.replace(" ", "T", 1)
            zoned = iso.endswith("Z") or "+" in iso[10:] or "-" in iso[10:]
            try:
                return parse_time(name, iso if zoned else iso + "Z")
            except InvalidInput:
                pass
    raise InvalidInput(f"{name} must be a date and time like {field_value(_EXAMPLE, language)}",
                       field=name)  # fmt: skip


_EXAMPLE = datetime(2025, 3, 1, 14, 30, tzinfo=UTC)
