"""Console pieces that need no server: the vendored htmx, the string catalogue, the
language choice, CSRF tokens."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from importlib import resources

import pytest

from vault.console import csrf
from vault.console.dates import field_value, format_time, parse_field
from vault.console.i18n import CATALOGUE, Catalogue, choose_language
from vault.console.routes import HTMX_SHA256, HTMX_VERSION
from vault.console.sections import sections_for
from vault.domain.scopes import Scope
from vault.errors import InvalidInput

_USED = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_]+)["']\s*[,)]""")
_PREFIXED = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_]*)["']\s*~""")
_KEYS_IN_CODE = re.compile(
    r'"((?:sign_in|error|hold|subject|invalid|disclosures|nav|dashboard)\.[a-z_]+)"'
)


def _package_text(*parts: str) -> str:
    return resources.files("vault.console").joinpath(*parts).read_text("utf-8")


def test_vendored_htmx_is_the_pinned_release() -> None:
    data = resources.files("vault.console").joinpath("static", "htmx.min.js").read_bytes()
    assert hashlib.sha256(data).hexdigest() == HTMX_SHA256
    assert f'version:"{HTMX_VERSION}"' in data.decode()


def test_every_string_the_templates_use_is_in_both_languages() -> None:
    templates = resources.files("vault.console").joinpath("templates")
    used: set[str] = set()
    prefixes: set[str] = set()
    for entry in templates.iterdir():
        text = entry.read_text("utf-8")
        used.update(_USED.findall(text))
        prefixes.update(_PREFIXED.findall(text))
    for module in ("auth.py", "holds.py", "subjects.py", "web.py", "sections.py", "disclosures.py"):
        used.update(k for k in _KEYS_IN_CODE.findall(_package_text(module)) if "." in k)
    used = {k for k in used if not k.endswith(".html")}
    missing = sorted(k for k in used if k not in CATALOGUE)
    assert missing == []
    for prefix in prefixes:
        assert any(k.startswith(prefix) for k in CATALOGUE), prefix
    for key, (english, dutch) in CATALOGUE.items():
        assert english and dutch, key
        # The same placeholders in both languages, so a value is never lost in Dutch.
        assert set(re.findall(r"{(\w+)}", english)) == set(re.findall(r"{(\w+)}", dutch)), key


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, "nl-NL,nl;q=0.9,en;q=0.8", "nl"),
        (None, "en-GB,en;q=0.9,nl;q=0.8", "en"),
        (None, "de-DE,nl;q=0.5", "nl"),
        (None, "fr, de", "en"),
        (None, "en;q=0.2, nl;q=0.7", "nl"),
        (None, "nl;q=0", "en"),
        (None, "nl;q=abc", "en"),
        (None, None, "en"),
        ("nl", "en", "nl"),
        ("xx", "nl", "nl"),
        (None, "nl," + "x" * 600, "en"),
    ],
)
def test_language_comes_from_the_switch_then_accept_language(
    cookie: str | None, header: str | None, expected: str
) -> None:
    assert choose_language(cookie, header) == expected


def test_catalogue_formats_values_and_shows_unknown_keys_as_themselves() -> None:
    assert Catalogue("nl").text("nav.signed_in_as", key="abc") == "Aangemeld met sleutel abc"
    assert Catalogue("en").text("no.such_key") == "no.such_key"


def test_csrf_tokens_are_bound_to_their_cookie_and_purpose() -> None:
    one, two = csrf.new_pre_session(), csrf.new_pre_session()
    assert csrf.matches(csrf.session_token(one), csrf.session_token(one))
    assert not csrf.matches(csrf.session_token(one), csrf.session_token(two))
    assert csrf.session_token(one) != csrf.sign_in_token(one)
    assert not csrf.matches(csrf.session_token(one), None)
    assert not csrf.matches(csrf.session_token(one), "")


def test_every_status_reason_and_journal_event_has_a_label() -> None:
    from vault.domain.erasures import ErasureStatus
    from vault.domain.holds import HoldAction, HoldReason

    wanted = [
        *(f"status.{s}" for s in ErasureStatus),
        *(f"reason.{r.value}" for r in HoldReason),
        *(f"event.{e}" for e in HoldAction),
        "subject.status_active",
        "subject.status_restricted",
    ]
    assert [k for k in wanted if k not in CATALOGUE] == []


@pytest.mark.parametrize(
    ("language", "typed", "expected"),
    [
        ("en", "2025-03-01 14:30", "2025-03-01T14:30:00+00:00"),
        ("en", "2025-03-01", "2025-03-01T00:00:00+00:00"),
        ("nl", "01-03-2025 14:30", "2025-03-01T14:30:00+00:00"),
        ("nl", "01-03-2025", "2025-03-01T00:00:00+00:00"),
        # ISO is accepted on every page: year first cannot be misread.
        ("nl", "2025-03-01 14:30", "2025-03-01T14:30:00+00:00"),
        ("en", "2025-03-01T14:30", "2025-03-01T14:30:00+00:00"),
        ("nl", "2025-03-01T14:30:00Z", "2025-03-01T14:30:00+00:00"),
        ("en", "2025-03-01T14:30+02:00", "2025-03-01T12:30:00+00:00"),
        ("en", "2025-03-01T14:30-02:00", "2025-03-01T16:30:00+00:00"),
        ("en", "  2025-03-01   14:30 ", "2025-03-01T14:30:00+00:00"),
    ],
)
def test_date_fields_read_the_pages_language_and_iso(
    language: str, typed: str, expected: str
) -> None:
    parsed = parse_field("when", typed, language)
    assert parsed is not None and parsed.isoformat() == expected


@pytest.mark.parametrize(
    ("language", "typed"),
    [
        ("en", "01-03-2025 14:30"),  # day first is not English's order
        ("nl", "03/01/2025"),
        ("nl", "31-02-2025"),
        ("en", "2025-13-01"),
        ("en", "tomorrow"),
        ("en", "2025-03-01 " + "9" * 40),
    ],
)
def test_a_date_field_that_is_no_date_names_the_field_and_the_form(
    language: str, typed: str
) -> None:
    example = "01-03-2025 14:30" if language == "nl" else "2025-03-01 14:30"
    with pytest.raises(InvalidInput, match=f"like {example}") as raised:
        parse_field("expires_at", typed, language)
    assert raised.value.field == "expires_at"


def test_times_show_in_the_pages_language() -> None:
    moment = datetime(2025, 3, 1, 14, 30, tzinfo=UTC)
    assert format_time(moment, "en") == "2025-03-01 14:30 UTC"
    assert format_time(moment, "nl") == "01-03-2025 14:30 UTC"
    assert format_time(None, "nl") == "—"
    assert parse_field("x", field_value(moment, "nl"), "nl") == moment
    assert parse_field("x", "", "nl") is None


@pytest.mark.parametrize(
    ("scopes", "paths"),
    [
        ({Scope.COMPLIANCE}, ["/console", "/console/holds", "/console/erasures",
                              "/console/subjects", "/console/access-log"]),
        ({Scope.ADMIN}, ["/console"]),
        ({Scope.ERASURE}, ["/console", "/console/erasures"]),
        ({Scope.READ, Scope.INGEST}, ["/console", "/console/subjects"]),
    ],
)  # fmt: skip
def test_sections_follow_the_scopes_their_pages_ask_for(
    scopes: set[Scope], paths: list[str]
) -> None:
    assert [s.path for s in sections_for(frozenset(scopes))] == paths
