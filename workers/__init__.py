"""Background jobs (erasure, retention, holds, sweeper, ledger). The foundation has none yet:
the access-log writer runs inside the API process (vault/services/access_log.py)."""
