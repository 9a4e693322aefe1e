-- name: insert
INSERT INTO api_keys (id, tenant_id, prefix, name, key_hash, scopes, allowed_cidrs,
                      bring_your_own, expires_at, created_by, owner)
VALUES ($1, $2, $3, $4, $5, $6, $7::cidr[], $8, $9, $10, $11)
RETURNING created_at, true AS sole_holder

-- name: insert_own_secret
-- A tenant's own secret ($5: the HMAC it is looked up by). If a key of any tenant holds
-- that HMAC already, the new key is stored under the secret's contest marker ($12)
-- instead, which find_by_hash sees, so the secret then authenticates nobody; if the
-- marker is taken too, under a hash nothing presents ($13). The same statement, and the
-- same answer, whichever happens: the caller learns nothing about other tenants' keys.
INSERT INTO api_keys (id, tenant_id, prefix, name, key_hash, scopes, allowed_cidrs,
                      bring_your_own, expires_at, created_by, owner)
VALUES ($1, $2, $3, $4,
        CASE WHEN NOT EXISTS (SELECT 1 FROM dv_find_api_key($5)) THEN $5
             WHEN NOT EXISTS (SELECT 1 FROM dv_find_api_key($12)) THEN $12
             ELSE $13 END,
        $6, $7::cidr[], $8, $9, $10, $11)
RETURNING created_at, key_hash = $5 AS sole_holder

-- name: own_secret_used_here
-- This tenant's own keys (revoked ones too) holding the secret's HMAC or its marker.
SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = $1 AND key_hash = ANY($2::bytea[]))

-- name: lock_own_secrets
SELECT pg_advisory_xact_lock(hashtextextended('datavault.own_secrets:' || $1::uuid::text, 0))

-- name: own_secrets_since
-- How many own secrets the tenant registered in the last $2 seconds, and in how many
-- seconds the oldest of them leaves that window.
SELECT count(*) AS recent,
       ceil(extract(epoch FROM min(created_at) + make_interval(secs => $2) - now()))::int
         AS frees_in
  FROM api_keys
 WHERE tenant_id = $1 AND bring_your_own AND created_at > now() - make_interval(secs => $2)

-- name: find_by_hash
-- $2 is the presented token's contest marker: a secret two tenants registered
-- authenticates nobody (see insert_own_secret).
SELECT k.id, k.tenant_id, k.prefix, k.key_hash, k.scopes, k.allowed_cidrs, k.expires_at,
       k.revoked_at, k.tenant_status, EXISTS (SELECT 1 FROM dv_find_api_key($2)) AS contested
  FROM dv_find_api_key($1) k

-- name: list
SELECT id, prefix, name, owner, scopes, allowed_cidrs::text[] AS allowed_cidrs, bring_your_own,
       expires_at, created_at, created_by, revoked_at, last_used_at, host(last_used_ip) AS last_used_ip
  FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id

-- name: revoke
UPDATE api_keys SET revoked_at = now()
 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
RETURNING revoked_at

-- name: live_admin_keys_for_update
-- Admin keys that still work (not revoked, not expired): a tenant must keep one.
SELECT id FROM api_keys
 WHERE tenant_id = $1 AND 'admin' = ANY(scopes) AND revoked_at IS NULL
   AND (expires_at IS NULL OR expires_at > now())
 ORDER BY id
   FOR UPDATE

-- name: key_holder
-- An API key as the two-person release rule sees it: its owner, whether it is revoked
-- or expired (its expiry passed, by the database's clock),
-- and its lineage (itself and every key that created it, at any depth) with their owners.
-- No depth cap: one holder can mint a chain of any length, and a walk that stopped short
-- would make the chain's end look like another person. Each step is one primary-key
-- lookup; UNION (not UNION ALL) drops a key seen before, so even a cycle in created_by
-- (which the API cannot make: a key is created by one that exists) ends the walk.
WITH RECURSIVE lineage AS (
    SELECT k.id, k.owner, k.created_by FROM api_keys k
     WHERE k.tenant_id = $1 AND k.id = $2
    UNION
    SELECT c.id, c.owner, c.created_by FROM lineage l
      JOIN api_keys c ON c.tenant_id = $1 AND c.id = l.created_by
)
SELECT k.id, k.owner, k.revoked_at IS NOT NULL AS revoked,
       coalesce(k.expires_at <= now(), false) AS expired,
       ARRAY(SELECT id FROM lineage) AS lineage_ids,
       ARRAY(SELECT owner FROM lineage WHERE owner IS NOT NULL) AS lineage_owners
  FROM api_keys k WHERE k.tenant_id = $1 AND k.id = $2

-- name: exists
SELECT 1 FROM api_keys WHERE tenant_id = $1 AND id = $2
