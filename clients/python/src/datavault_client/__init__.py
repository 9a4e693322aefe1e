"""A Python client for the datavault HTTP API.

    from datavault_client import Client, verify_receipt

    with Client("https://vault.example.com", api_key=key) as vault:
        artefact = vault.artefacts.upload("user-42", "call.webm", category="recording")
        erasure = vault.erasures.request("user-42")
        vault.erasures.wait(erasure.id)
        receipt = vault.erasures.receipt(erasure.id)
        verified = verify_receipt(receipt.document, vault.receipt_keys())

Errors are typed (`datavault_client.errors`), answers are dataclasses
(`datavault_client.models`), secrets are `Secret` (masked when printed).
"""

from datavault_client.artefacts import Download
from datavault_client.client import Client
from datavault_client.erasures import ErasureFollower
from datavault_client.errors import (
    BadRequest,
    Conflict,
    ConnectionFailed,
    DatavaultError,
    FieldError,
    Forbidden,
    Gone,
    IntegrityFailure,
    InvalidInput,
    NotFound,
    ProblemError,
    RangeNotSatisfiable,
    ReceiptInvalid,
    RequestTimeout,
    Restricted,
    RestrictedConflict,
    ServerError,
    Throttled,
    TooLarge,
    Unauthenticated,
    Unavailable,
    UnexpectedResponse,
    UnsupportedMediaType,
    WebhookVerificationError,
)
from datavault_client.receipts import VerifiedReceipt, canonical_json, verify_receipt
from datavault_client.retry import RetryPolicy
from datavault_client.secret import Secret
from datavault_client.webhooks import WebhookEvent, WebhookVerifier

__version__ = "0.1.0"

__all__ = [
    "BadRequest",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DatavaultError",
    "Download",
    "ErasureFollower",
    "FieldError",
    "Forbidden",
    "Gone",
    "IntegrityFailure",
    "InvalidInput",
    "NotFound",
    "ProblemError",
    "RangeNotSatisfiable",
    "ReceiptInvalid",
    "RequestTimeout",
    "Restricted",
    "RestrictedConflict",
    "RetryPolicy",
    "Secret",
    "ServerError",
    "Throttled",
    "TooLarge",
    "Unauthenticated",
    "Unavailable",
    "UnexpectedResponse",
    "UnsupportedMediaType",
    "VerifiedReceipt",
    "WebhookEvent",
    "WebhookVerificationError",
    "WebhookVerifier",
    "__version__",
    "canonical_json",
    "verify_receipt",
]
