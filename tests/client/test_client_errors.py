"""Problem answers become typed exceptions carrying the problem's type, title, status,
detail and request id, and nothing secret: not the API key, not the subject reference."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator

import httpx
import pytest

from datavault_client import (
    Client,
    Conflict,
    DatavaultError,
    Forbidden,
    InvalidInput,
    NotFound,
    ProblemError,
    RangeNotSatisfiable,
    Restricted,
    RestrictedConflict,
    Secret,
    Unauthenticated,
)
from tests.api.helpers import from_ip
from tests.client.support import FAST_RETRY, Keys, tenant_clients, unique
from tests.support import ServerThread, Tenant, make_tenant

PROBLEMS = "https://datavault.dev/problems/"


@pytest.fixture
def keys(server: ServerThread, tenant: Tenant) -> Iterator[Keys]:
    with tenant_clients(server, tenant) as made:
        yield made


def _never_in(error: BaseException, *secrets: str) -> None:
    shown = " ".join([str(error), repr(error), repr(error.args), repr(vars(error))])
    for secret in secrets:
        assert secret not in shown


def test_a_wrong_key_is_unauthenticated_and_never_shown(server: ServerThread) -> None:
    wrong = f"dv_aaaaaaaaaaaa_{uuid.uuid4().hex}{uuid.uuid4().hex}"
    ref = unique("secret-person")
    # From an address of its own (a /64 no other test uses): the auth throttle counts
    # failures per address, and other tests fail from 127.0.0.1 too; a 429 would be theirs.
    address = from_ip(f"2001:db8:c1:{uuid.uuid4().hex[:4]}::1")
    http = httpx.Client(headers=address, timeout=30.0)
    with Client(server.base_url, wrong, retry=FAST_RETRY, http=http) as client:
        with pytest.raises(Unauthenticated) as raised:
            client.artefacts.list(ref)
        assert repr(client) == f"Client({server.base_url!r})"
    error = raised.value
    assert isinstance(error, ProblemError) and isinstance(error, DatavaultError)
    assert (error.status, error.type, error.title) == (401, PROBLEMS + "unauthenticated",
                                                      "Unauthorized")  # fmt: skip
    assert error.detail and error.request_id
    assert error.operation == "GET /v1/subjects/{ref}/artefacts"
    _never_in(error, wrong, wrong[16:], ref)


def test_a_key_without_the_scope_is_forbidden(keys: Keys) -> None:
    with pytest.raises(Forbidden) as raised:
        keys.privacy.artefacts.list(unique("someone"))
    assert raised.value.status == 403 and not isinstance(raised.value, Restricted)


def test_what_does_not_exist_or_is_another_tenants_is_not_found(
    keys: Keys, server: ServerThread
) -> None:
    ref = unique("private-person")
    artefact = keys.app.artefacts.upload(ref, b"mine", category="recording")
    other = make_tenant(server.settings, server.database_url)
    with tenant_clients(server, other) as theirs:
        with pytest.raises(NotFound) as raised:
            theirs.app.artefacts.get(ref, artefact.id)
        with pytest.raises(NotFound):
            theirs.app.subjects.get(ref)
    assert raised.value.status == 404
    _never_in(raised.value, ref)


def test_invalid_input_names_the_fields(keys: Keys) -> None:
    with pytest.raises(InvalidInput) as raised:
        keys.officer.holds.place(reason="because", reference="C-1")
    assert raised.value.status == 422
    assert [e.field for e in raised.value.errors] == ["reason"]
    with pytest.raises(InvalidInput) as missing:
        keys.app.artefacts.upload(unique("x"), b"data", category="no such category")
    assert missing.value.errors[0].field == "category"


def test_held_data_is_a_conflict_naming_the_holds(keys: Keys) -> None:
    ref = unique("held")
    artefact = keys.app.artefacts.upload(ref, b"evidence", category="recording")
    hold = keys.officer.holds.place(reason="litigation", reference="C-9", subject_ref=ref)
    with pytest.raises(Conflict) as raised:
        keys.app.artefacts.delete(ref, artefact.id)
    assert raised.value.status == 409 and raised.value.holds == [hold.id]


def test_restricted_data_is_restricted_for_readers_and_a_conflict_for_deletes(
    keys: Keys,
) -> None:
    ref = unique("restricted")
    artefact = keys.app.artefacts.upload(ref, b"data", category="recording")
    restricted = keys.officer.subjects.restrict(ref, "the subject contests the data")
    assert restricted.status == "restricted" and restricted.restricted_at is not None
    with pytest.raises(Restricted) as read:
        keys.app.artefacts.get(ref, artefact.id)
    assert read.value.slug == "restricted" and isinstance(read.value, Forbidden)
    with pytest.raises(RestrictedConflict):
        keys.app.artefacts.delete(ref, artefact.id)
    assert keys.officer.artefacts.get(ref, artefact.id).id == artefact.id  # compliance reads
    assert keys.officer.subjects.lift_restriction(ref).status == "active"
    assert keys.app.artefacts.get(ref, artefact.id).id == artefact.id


def test_an_unsatisfiable_range_is_416(keys: Keys) -> None:
    ref = unique("range")
    artefact = keys.app.artefacts.upload(ref, b"0123456789", category="recording")
    with pytest.raises(RangeNotSatisfiable):
        keys.app.artefacts.download(ref, artefact.id, start=10)
    with pytest.raises(ValueError):
        keys.app.artefacts.download(ref, artefact.id, start=5, end=2)


def test_secrets_do_not_print_or_pickle(keys: Keys) -> None:
    created = keys.admin.api_keys.create(name="printer", scopes=["read"])
    secret = created.secret.reveal()
    assert secret.startswith(f"dv_{created.prefix}_")
    for shown in (repr(created), str(created), repr(created.secret)):
        assert secret not in shown and secret[16:] not in shown
    assert f"dv_{created.prefix}_" in repr(created.secret)  # the public part helps tell keys apart
    with pytest.raises(TypeError):
        pickle.dumps(created.secret)
    own = Secret("my own secret of at least 32 characters, not guessable")
    assert "my own" not in repr(own)
