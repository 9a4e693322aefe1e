-- name: insert
INSERT INTO api_keys (id, tenant_id, prefix, name, key_hash, scopes, allowed_cidrs,
                      bring_your_own, expires_at, created_by, owner)
VALUES ($1, $2, $3, $4, $5, $6, $7::cidr[], $8, $9, $10, $11)
RETURNING created_at

-- name: find_by_hash
SELECT id, tenant_id, prefix, key_hash, scopes, allowed_cidrs, expires_at, revoked_at,
       tenant_status
  FROM dv_find_api_key($1)

-- name: list
SELECT id, prefix, name, owner, scopes, allowed_cidrs::text[] AS allowed_cidrs, bring_your_own,
       expires_at, created_at, created_by, revoked_at, last_used_at, host(last_used_ip) AS last_used_ip
  FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id

-- name: revoke
UPDATE api_keys SET revoked_at = now()
 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
RETURNING id

-- name: live_admin_keys_for_update
-- Admin keys that still work (not revoked, not expired): a tenant must keep one.
SELECT id FROM api_keys
 WHERE tenant_id = $1 AND 'admin' = ANY(scopes) AND revoked_at IS NULL
   AND (expires_at IS NULL OR expires_at > now())
 ORDER BY id
   FOR UPDATE

-- name: key_holder
-- An API key as the two-person release rule sees it: its owner, its creator's owner.
SELECT k.id, k.owner, k.created_by, c.owner AS creator_owner, k.revoked_at IS NOT NULL AS revoked
  FROM api_keys k
  LEFT JOIN api_keys c ON c.tenant_id = k.tenant_id AND c.id = k.created_by
 WHERE k.tenant_id = $1 AND k.id = $2

-- name: exists
SELECT 1 FROM api_keys WHERE tenant_id = $1 AND id = $2
