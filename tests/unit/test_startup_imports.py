"""What a process imports to start: every CLI command and server pays for it, and the
suite starts hundreds. boto3 is needed only with an S3 bucket or AWS KMS configured, and
stream_zip (with pycryptodome and cffi's C parser behind it) only for an export."""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = ("boto3", "botocore", "stream_zip", "Crypto", "pycparser")


def test_the_server_and_the_cli_start_without_the_s3_kms_and_zip_libraries() -> None:
    probe = (
        "import json, sys, vault.app, vault.cli, workers.runner;"
        f"print(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
