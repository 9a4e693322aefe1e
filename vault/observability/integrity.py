"""Integrity failures, each counted in `datavault_integrity_failures_total` and logged
once, where it is found.

A failure found where the vault knows what failed (an artefact's ciphertext, its blob
missing) is recorded there, so it is counted whether it is answered as a problem or cuts
a streamed answer after its status line (red team 19, finding 1); the problem handler
and the response middleware record what reaches them unrecorded (a sealed record, a
disclosure). The exception is marked once recorded, so no path counts it twice. The line
carries the kind and ids only: never key bytes, a subject reference or plaintext.
"""

from __future__ import annotations

import uuid

import structlog

from vault.observability.metrics import Metrics

log = structlog.get_logger("datavault.integrity")

_RECORDED = "_datavault_integrity_recorded"


def integrity_recorded(exc: BaseException) -> bool:
    return bool(getattr(exc, _RECORDED, False))


def integrity_failed(
    metrics: Metrics | None,
    exc: BaseException,
    kind: str,
    *,
    artefact_id: uuid.UUID | None = None,
    request_id: str | None = None,
) -> None:
    """Count and log `exc` as an integrity failure of `kind`, unless it was already."""
    if integrity_recorded(exc):
        return
    setattr(exc, _RECORDED, True)
    if metrics is not None:
        metrics.integrity_failures.labels(kind=kind).inc()
    fields: dict[str, str] = {"kind": kind}
    if artefact_id is not None:
        fields["artefact_id"] = str(artefact_id)
    if request_id is not None:
        fields["request_id"] = request_id
    log.error("integrity_failure", **fields)
