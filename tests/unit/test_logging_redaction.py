import json

import pytest
import structlog

from vault.observability.logging import REDACTED


def test_secret_named_fields_never_reach_the_log(
    capsys: pytest.CaptureFixture[str], vault_logging: None
) -> None:
    structlog.get_logger("test").info(
        "event",
        secret="s3cr3t-value",
        api_key="dv_abc_def",
        authorization="Bearer xyz",
        subject_ref="alice@example.com",
        plaintext="hello",
        api_key_id="kept-id",
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("secret", "api_key", "authorization", "subject_ref", "plaintext"):
        assert line[name] == REDACTED
    assert line["api_key_id"] == "kept-id"


def test_tracebacks_carry_no_local_variables(
    capsys: pytest.CaptureFixture[str], vault_logging: None
) -> None:
    key_material = "never-print-me"  # noqa: F841 (a local the traceback must not show)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        structlog.get_logger("test").error("failed", exc_info=exc)
    output = capsys.readouterr().out
    assert "boom" in output
    assert "never-print-me" not in output
