-- name: ensure_head
INSERT INTO ledger_head (singleton, seq, entry_hash) VALUES (true, 0, $1)
ON CONFLICT (singleton) DO NOTHING

-- name: lock_head
SELECT seq, entry_hash FROM ledger_head WHERE singleton FOR UPDATE

-- name: get_head
SELECT seq, entry_hash FROM ledger_head WHERE singleton

-- name: update_head
UPDATE ledger_head SET seq = $1, entry_hash = $2, updated_at = now() WHERE singleton

-- name: pending
SELECT id, key_kind, key_id, erasure_id, destroyed_at FROM ledger_outbox
 WHERE tenant_id = $1 AND published_at IS NULL ORDER BY id LIMIT $2

-- name: mark_published
UPDATE ledger_outbox SET published_at = now(), ledger_seq = $3
 WHERE tenant_id = $1 AND id = ANY($2::bigint[]) AND published_at IS NULL

-- name: redestroy_subject_key
UPDATE subject_keys SET wrapped_key = NULL, destroyed_at = coalesce(destroyed_at, $3)
 WHERE tenant_id = $1 AND id = $2 AND wrapped_key IS NOT NULL
RETURNING id

-- name: redestroy_data_keys_under
UPDATE data_keys SET wrapped_key = NULL, destroyed_at = now()
 WHERE tenant_id = $1 AND subject_key_id = $2 AND wrapped_key IS NOT NULL
