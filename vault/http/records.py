"""/v1/subjects/{ref}/records: small JSON values, replaced as a whole."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from vault.domain.scopes import Scope
from vault.domain.subject_refs import SubjectRef
from vault.http.body import read_json_body
from vault.http.models.common import PageQuery
from vault.http.models.subjects import (
    KeptVersion,
    KeptVersionList,
    Record,
    RecordPage,
    RecordPutQuery,
)
from vault.http.operation import (
    ANY_JSON,
    Answer,
    RawBody,
    Tag,
    created,
    no_content,
    ok,
    operation,
    render,
)
from vault.http.pages import page_after_name
from vault.http.params import decode_cursor_parts, encode_cursor_parts, query_int
from vault.http.render import rfc3339
from vault.http.state import vault_state
from vault.http.subject_path import subject_location
from vault.http.subject_request import access_for
from vault.http.transfers import watch_transfer
from vault.services.api_keys import Principal
from vault.services.records import MAX_RECORD_BYTES, check_json

_VALUE = Answer("The JSON value as stored", schema=ANY_JSON)
_NO_STORE = {"Cache-Control": "private, no-store"}


@operation(
    "putRecord", tag=Tag.RECORDS,
    summary="Create (201) or replace (200) a record: any JSON value, at most 1 MiB",
    scope=Scope.INGEST, key_checked_in_statement=True,
    answers={
        201: created(Record, "/v1/subjects/{ref}/records/{name}"),
        200: ok(Record, "Replaced (version + 1)"),
    },
    raw_body=RawBody("application/json", ANY_JSON, "Any JSON value, at most 1 MiB"),
    errors=(400, 409, 413, 415, 422),
    description="Replacing shreds the previous version unless a hold covers it (then the "
    "old version is kept, readable only by compliance).",
)  # fmt: skip
async def put_record(
    request: Request, caller: Principal, ref: SubjectRef, query: RecordPutQuery
) -> Response:
    value = check_json(await read_json_body(request, MAX_RECORD_BYTES))
    record = await vault_state(request).records.put(
        caller.tenant_id, caller.key_to_check, ref, request.path_params["name"], query.category,
        value,
    )  # fmt: skip
    if not record.created:
        return render(Record.of(record))
    location = subject_location(ref, "records", record.name)
    return render(Record.of(record), status=201, headers={"Location": location})


@operation(
    "getRecord", tag=Tag.RECORDS, summary="The record's JSON value as stored",
    scope=Scope.READ, key_checked_in_statement=True, answers={200: _VALUE}, errors=(404, 410),
)  # fmt: skip
async def get_record(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    # A transfer like a seek's (vault/http/transfers.py): the value's data key is held,
    # and watched, from the statement that finds it until the answer has left.
    lease = watch_transfer(request, caller)
    value = await vault_state(request).records.get(
        caller.tenant_id, caller.key_to_check, ref, request.path_params["name"],
        access_for(caller), lease,
    )  # fmt: skip
    return Response(value, media_type="application/json", headers=_NO_STORE)


@operation(
    "listRecords", tag=Tag.RECORDS, summary="List the subject's records, newest first",
    scope=Scope.READ, key_checked_in_statement=True, answers={200: ok(RecordPage)},
    errors=(404,),
)  # fmt: skip
async def list_records(
    request: Request, caller: Principal, ref: SubjectRef, query: PageQuery
) -> Response:
    records = await vault_state(request).records.list(
        caller.tenant_id, caller.key_to_check, ref, access_for(caller),
        after=page_after_name(decode_cursor_parts(query.cursor, 2)), limit=query.limit,
    )  # fmt: skip
    last = records[-1] if len(records) == query.limit else None
    cursor = encode_cursor_parts(rfc3339(last.updated_at), last.name) if last else None
    return render(RecordPage([Record.of(r) for r in records], cursor))


@operation(
    "deleteRecord", tag=Tag.RECORDS, summary="Crypto-shred the record",
    scope=Scope.INGEST, answers={204: no_content("Shredded")}, errors=(404, 409, 410),
    description="409 under a legal hold (with holds), or while the subject's processing is "
    "restricted (problem type restricted).",
)  # fmt: skip
async def delete_record(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    await vault_state(request).records.delete(caller.tenant_id, ref, request.path_params["name"])
    return Response(status_code=204)


@operation(
    "listRecordVersions", tag=Tag.RECORDS,
    summary="Versions a legal hold kept when the record was replaced, newest first",
    scope=Scope.COMPLIANCE, answers={200: ok(KeptVersionList)}, errors=(404,),
)  # fmt: skip
async def list_record_versions(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    versions = await vault_state(request).records.kept_versions(
        caller.tenant_id, ref, request.path_params["name"]
    )
    return render(KeptVersionList([KeptVersion.of(v) for v in versions], None))


@operation(
    "getRecordVersion", tag=Tag.RECORDS, summary="One version's JSON value, while its key lives",
    scope=Scope.COMPLIANCE, answers={200: _VALUE}, errors=(404, 410, 422),
)  # fmt: skip
async def get_record_version(request: Request, caller: Principal, ref: SubjectRef) -> Response:
    version = query_int("version", request.path_params["version"], minimum=1, maximum=2**31 - 1)
    assert version is not None
    # A transfer, as getRecord's: the key held and watched until the answer has left.
    lease = watch_transfer(request, caller)
    value = await vault_state(request).records.version_value(
        caller.tenant_id, ref, request.path_params["name"], version, lease
    )
    return Response(value, media_type="application/json", headers=_NO_STORE)
