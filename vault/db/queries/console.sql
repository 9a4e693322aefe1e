-- Web console sessions and chain checks (vault/console).

-- name: find_session
SELECT id, tenant_id, api_key_id, prefix, scopes, created_at, last_seen_at, allowed_cidrs,
       key_expires_at, key_revoked_at, tenant_status
  FROM dv_find_console_session($1)

-- name: insert_session
INSERT INTO console_sessions (token_hash, id, tenant_id, api_key_id, scopes, created_at,
                              last_seen_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)

-- name: touch_session
UPDATE console_sessions SET last_seen_at = $3 WHERE tenant_id = $1 AND id = $2

-- name: delete_session
DELETE FROM console_sessions WHERE tenant_id = $1 AND id = $2

-- name: delete_expired
DELETE FROM console_sessions
 WHERE tenant_id = $1 AND (created_at <= $2 OR last_seen_at <= $3)

-- name: last_chain_check
SELECT checked_at, checked_by, rows_checked, ok, first_bad_seq, problem, disclosures_checked,
       first_bad_disclosure
  FROM console_chain_checks WHERE tenant_id = $1

-- name: save_chain_check
INSERT INTO console_chain_checks (tenant_id, checked_at, checked_by, rows_checked, ok,
                                  first_bad_seq, problem, disclosures_checked,
                                  first_bad_disclosure)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (tenant_id) DO UPDATE
   SET checked_at = EXCLUDED.checked_at, checked_by = EXCLUDED.checked_by,
       rows_checked = EXCLUDED.rows_checked, ok = EXCLUDED.ok,
       first_bad_seq = EXCLUDED.first_bad_seq, problem = EXCLUDED.problem,
       disclosures_checked = EXCLUDED.disclosures_checked,
       first_bad_disclosure = EXCLUDED.first_bad_disclosure
