-- name: insert
INSERT INTO api_keys (id, tenant_id, prefix, name, key_hash, scopes, allowed_cidrs,
                      bring_your_own, expires_at, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7::cidr[], $8, $9, $10)
RETURNING created_at

-- name: find_by_hash
SELECT id, tenant_id, prefix, key_hash, scopes, allowed_cidrs, expires_at, revoked_at,
       tenant_status
  FROM dv_find_api_key($1)

-- name: list
SELECT id, prefix, name, scopes, allowed_cidrs::text[] AS allowed_cidrs, bring_your_own,
       expires_at, created_at, created_by, revoked_at, last_used_at, host(last_used_ip) AS last_used_ip
  FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id

-- name: revoke
UPDATE api_keys SET revoked_at = now()
 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
RETURNING id

-- name: exists
SELECT 1 FROM api_keys WHERE tenant_id = $1 AND id = $2
