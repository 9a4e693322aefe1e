"""Playback links (API.md "Playback links"): minted under the read scope, used without
an Authorization header.

`POST /v1/subjects/{ref}/artefacts/{artefact_id}/links` answers `{url, expires_at}`;
`GET`/`HEAD /playback/{token}` serves the artefact's content exactly as `…/content` does
(Range, HEAD, the same headers). The link's URL lives outside `/v1`: it is not an API
operation a client composes but an opaque URL it hands to a browser, and its credential
is in the path, which no OpenAPI security scheme can name.

Every use is an access by the minting key: its access-log row names that key, the
client's IP, the subject's pseudonymous id and the artefact, like a download with the key
would. A link that is dead (expired, its key revoked, its artefact deleted, its subject
erased or restricted) answers 404 like one that never existed, and is logged under its
tenant naming the key as refused, not as a use. A token that names no link at all counts
as a failed authentication for the client IP's throttle, as a wrong API key does.
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.playback_links import link_lifetime
from vault.domain.ranges import ByteRange
from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef
from vault.errors import Forbidden, NotFound, Throttled
from vault.http.artefacts import (
    RANGE_HEADER,
    answered_in_one_message,
    content_answers,
    content_response,
    seek_logged_ahead,
)
from vault.http.models.playback import LinkRequest, PlaybackLink
from vault.http.operation import Tag, created, operation, render
from vault.http.params import path_uuid
from vault.http.state import VaultState, vault_state
from vault.http.transfers import watch_transfer
from vault.services.api_keys import Principal
from vault.services.artefacts import Content
from vault.services.playback_links import LINK_ACCESS

# Where links are served; the token follows.
PLAYBACK_PATH: Final = "/playback"
# One answer for every dead or unknown link: whether a subject was erased or restricted,
# or a key revoked, is nothing the holder of a URL may learn.
DEAD_LINK: Final = "no such link, or it is no longer valid"


@operation(
    "mintPlaybackLink", tag=Tag.ARTEFACTS,
    summary="Mint a playback link: a URL that serves the artefact's content without an "
    "Authorization header, for a browser's <video> or a download link",
    scope=Scope.READ, answers={201: created(PlaybackLink, "the link's url")},
    errors=(404, 410), body_as_sent=LinkRequest,
    description="expires_in: seconds, default 900, at most 3600. The link reads as the read "
    "scope does, whatever scope minted it: 403 (restricted) for a restricted subject or data "
    "kept after an erasure. The token is stored only as a hash: this answer is the one place "
    "it is shown.",
)  # fmt: skip
async def mint_playback_link(
    request: Request, caller: Principal, ref: SubjectRef, body: dict[str, Any] | None
) -> Response:
    artefact_id = path_uuid(request.path_params["artefact_id"])
    request.state.artefact_id = artefact_id
    # The domain's check: a whole number of seconds in range (JSON's true is not one).
    lifetime = link_lifetime(body or {})
    state = vault_state(request)
    link = await state.playback.mint(caller, ref, artefact_id, lifetime)
    url = f"{state.settings.public_base_url}{PLAYBACK_PATH}/{link.token.reveal()}"
    # The answer holds a credential: no cache may keep it.
    return render(
        PlaybackLink(url, link.expires_at), status=201, headers={"Cache-Control": "no-store"}
    )


_LINK_USE = (
    "No Authorization header: the token in the path is the credential. The artefact's "
    "content as GET …/content serves it (Range, HEAD, the same headers). 404 for a token "
    "that names no link and for a dead one alike: expired, its minting key revoked or "
    "expired, its artefact deleted, its subject erased or restricted. Every use is in the "
    "access log under the minting key; an unknown token counts as a failed authentication "
    "for the client's address (429 beyond the limit)."
)


@operation(
    "playPlaybackLink", tag=Tag.ARTEFACTS,
    summary="A playback link: the artefact's plaintext, streamed; one byte range gives 206",
    scope=None, answers=content_answers(with_body=True), headers=(RANGE_HEADER,),
    errors=(404, 429, 503), description=_LINK_USE,
)  # fmt: skip
async def play(request: Request) -> Response:
    return await _play(request)


@operation(
    "headPlaybackLink", tag=Tag.ARTEFACTS,
    summary="The headers GET would send through the link, without the body",
    scope=None, answers=content_answers(with_body=False), headers=(RANGE_HEADER,),
    errors=(404, 429, 503), description=_LINK_USE,
)  # fmt: skip
async def play_headers(request: Request) -> Response:
    return await _play(request)


async def _play(request: Request) -> Response:
    state = vault_state(request)
    use = await state.playback.resolve(request.path_params["token"])
    if use is None:
        _count_unknown_link(request, state)
        raise NotFound(DEAD_LINK)
    request.state.subject_ref_hash = use.subject_ref_hash
    request.state.artefact_id = use.artefact_id
    if not use.usable:
        # Logged under its tenant, naming the key, as an attempt rather than a use.
        request.state.refused_key = use.principal
        raise NotFound(DEAD_LINK)
    request.state.principal = use.principal
    request.state.key_prefix = use.principal.prefix
    tenant_id, artefacts = use.principal.tenant_id, state.artefacts
    # A GET holds the data key from the statement that finds it (migration 0032), and so
    # does a HEAD: its Content-Disposition carries the decrypted filename.
    lease = watch_transfer(request, use.principal)
    try:
        # The link's key was found live by `resolve` just now: None, not checked again.
        one_message = answered_in_one_message(request)
        located = await artefacts.locate_by_ref_hash(
            tenant_id, None, use.subject_ref_hash, use.artefact_id, LINK_ACCESS, lease,
            one_message=one_message, decided=seek_logged_ahead(request, one_message),
        )  # fmt: skip
    except (NotFound, Forbidden):  # deleted (410), erased, restricted (403): all dead
        raise NotFound(DEAD_LINK) from None

    async def open_body(byte_range: ByteRange | None) -> Content:
        return await artefacts.open_content(located, byte_range, lease)

    return await content_response(request, located.artefact, open_body)


def _count_unknown_link(request: Request, state: VaultState) -> None:
    """A token that names no link is a wrong credential: counted for the client IP like a
    wrong API key (429 once over the limit). A valid link is never refused by this."""
    retry_after = state.auth_throttle.failed_attempt(request.state.client_ip)
    if retry_after is not None:
        state.metrics.auth_failures.labels(reason="throttled").inc()
        raise Throttled("too many failed authentication attempts", retry_after)
    state.metrics.auth_failures.labels(reason="invalid").inc()
