"""Playback links: minted under the read scope, used without an Authorization header."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from vault.domain.playback_links import (
    DEFAULT_LIFETIME_SECONDS,
    MAX_LIFETIME_SECONDS,
    MIN_LIFETIME_SECONDS,
)
from vault.http.models.common import Time


class LinkRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """Checked by vault/domain/playback_links.py (`link_lifetime`)."""

    expires_in: Annotated[
        int,
        Meta(
            ge=MIN_LIFETIME_SECONDS, le=MAX_LIFETIME_SECONDS,
            description="Seconds the link lives",
        ),
    ] = DEFAULT_LIFETIME_SECONDS  # fmt: skip


class PlaybackLink(Struct):
    url: Annotated[
        str,
        Meta(
            description="DATAVAULT_PUBLIC_URL/playback/<token>: the token is the credential; "
            "the URL names neither the subject nor the artefact",
            extra_json_schema={"format": "uri"},
        ),
    ]
    expires_at: Time
