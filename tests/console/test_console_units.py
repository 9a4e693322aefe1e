"""Console pieces that need no server: the vendored htmx, the string catalogue, the
language choice, CSRF tokens."""

from __future__ import annotations

import hashlib
import re
from importlib import resources

import pytest

from vault.console import csrf
from vault.console.i18n import CATALOGUE, Catalogue, choose_language
from vault.console.routes import HTMX_SHA256, HTMX_VERSION

_USED = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_]+)["']\s*[,)]""")
_PREFIXED = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_]*)["']\s*~""")
_KEYS_IN_CODE = re.compile(r'"((?:sign_in|error|hold|subject|invalid)\.[a-z_]+)"')


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
    for module in ("auth.py", "holds.py", "subjects.py", "web.py"):
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
