"""What the lifespan opens and the endpoints use, as one typed value on app.state."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from crypto.providers.base import RootKeyProvider
from vault.blobs.base import BlobStore
from vault.config import Settings
from vault.db.database import Database
from vault.domain.throttle import FailureThrottle
from vault.observability.metrics import Metrics
from vault.services.access_log import AccessLogWriter
from vault.services.api_keys import ApiKeyService
from vault.services.artefacts import ArtefactService
from vault.services.disclosures import DisclosureService
from vault.services.erasures import ErasureService
from vault.services.export import ExportService
from vault.services.holds import HoldService
from vault.services.keyring import KeyRing
from vault.services.ledger_inline import InlineLedger
from vault.services.playback_links import PlaybackLinkService
from vault.services.records import RecordService
from vault.services.subject_refs import SubjectRefHasher
from vault.services.subject_status import SubjectStatusService
from vault.services.subjects import SubjectService
from vault.services.transfer_releases import TransferReleaser
from vault.services.webhooks import WebhookService


@dataclass
class VaultState:
    settings: Settings
    db: Database
    root: RootKeyProvider
    blobs: BlobStore
    api_keys: ApiKeyService
    access_log: AccessLogWriter
    auth_throttle: FailureThrottle
    metrics: Metrics
    subject_refs: SubjectRefHasher
    keyring: KeyRing
    subjects: SubjectService
    subject_status: SubjectStatusService
    artefacts: ArtefactService
    records: RecordService
    export: ExportService
    holds: HoldService
    # Publishes a control's shred-ledger entry before the answer (holds share it).
    ledger: InlineLedger
    erasures: ErasureService
    playback: PlaybackLinkService
    disclosures: DisclosureService
    webhooks: WebhookService
    # Ended transfers' key holds, released off the request path in batches.
    transfer_releases: TransferReleaser


def vault_state(request: Request) -> VaultState:
    state: VaultState = request.app.state.vault
    return state
