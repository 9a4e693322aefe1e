-- Playback links (migration 0019, vault/services/playback_links.py).

-- name: insert
-- $6: the lifetime in seconds, from the database's clock like every other expiry.
INSERT INTO playback_links (token_hash, id, tenant_id, artefact_id, minted_by, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::int))
RETURNING expires_at

-- name: find
-- Across tenants, by the token's hash: the tenant and the link's id only.
SELECT id, tenant_id FROM dv_find_playback_link($1)

-- name: state
-- A link as its use sees it, in its tenant's transaction: the minting key (for the access
-- log, whether or not it is still live: require_live_key says that), and the subject's
-- ref_hash, how the read path finds the subject (never its reference, which the link
-- does not know). Expiries are the database clock's.
SELECT l.id, l.artefact_id, l.expires_at, l.expires_at > now() AS unexpired,
       k.id AS key_id, k.prefix AS key_prefix, k.scopes AS key_scopes,
       (k.expires_at IS NULL OR k.expires_at > now()) AS key_unexpired,
       s.ref_hash
  FROM playback_links l
  JOIN api_keys k ON k.tenant_id = l.tenant_id AND k.id = l.minted_by
  JOIN artefacts a ON a.tenant_id = l.tenant_id AND a.id = l.artefact_id
  JOIN subjects s ON s.tenant_id = a.tenant_id AND s.id = a.subject_id
 WHERE l.tenant_id = $1 AND l.id = $2

-- name: require_live_key
-- DV401 (KeyNoLongerLive) if the minting key was revoked or its tenant closed.
SELECT dv_require_live_key($1, $2)

-- name: delete_expired
DELETE FROM playback_links WHERE tenant_id = $1 AND expires_at <= $2
