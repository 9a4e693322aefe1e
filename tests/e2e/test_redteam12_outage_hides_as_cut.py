"""Red team 12: a dependency failing in the middle of an export is logged as a transfer
cut by the watchdog, not as the vault's failure.

b3174b1 (vault/http/transfers.py `_refusal_after_head`) treats every VaultError a
watched transfer raises after its head left as "the answer's own refusal": the
connection is dropped, `transfer_cut` is logged (warning) and counted with a reason
label. But `Unavailable` is a VaultError too: the database layer raises it for a lost
connection or a timed-out statement (vault/db/database.py `_database_errors`). A
database outage in mid-export is therefore counted as
`transfers_cut{reason="unconfirmed"}` (documented as "keys could not be confirmed for
50 s") and logged as a cut, where before it was an unhandled error (500, logged at
error level): what an operator alerts on. docs/deletion-guarantee.md names only
"an export's next entry whose key was destroyed or whose artefact was deleted since its
manifest" (404/410).

Fault injected on purpose: the export's artefact lookup raises what the database layer
raises when its connection is lost (stopping the shared test database is not an option).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import create_key, put_record, uploaded
from tests.e2e.stalled_clients import export_until_dropped, vault_output_until
from tests.support import ServerThread, make_tenant, module_private_server
from vault.errors import Unavailable
from vault.services.artefacts import ArtefactService

vault = module_private_server("rt12-outage")


def test_a_database_outage_mid_export_is_not_logged_as_a_transfer_cut(
    vault: ServerThread, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant = make_tenant(vault.settings, vault.database_url)
    ref = "rt12-outage"
    with vault.client() as http:
        ingest = create_key(http, tenant, ["ingest"])
        compliance = create_key(http, tenant, ["compliance"])
        assert put_record(http, ingest, ref, "a-account", b'{"plan": "pro"}').status_code == 201
        uploaded(http, ingest, ref, b"invoice pdf", category="billing")

    async def outage(*args: Any, **kwargs: Any) -> Any:
        try:
            raise ConnectionResetError("connection lost")
        except ConnectionResetError as exc:
            raise Unavailable("database unavailable") from exc

    monkeypatch.setattr(ArtefactService, "locate", outage)
    capsys.readouterr()
    export_until_dropped(vault, ref, compliance["secret"])  # the export did not finish
    logged = vault_output_until(capsys, "route=/v1/subjects/{ref}/export")
    assert "route=/v1/subjects/{ref}/export" in logged
    # The outage is the vault's failure, not a watchdog's cut of a transfer.
    assert "transfer_cut" not in logged, logged
