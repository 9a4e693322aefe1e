-- name: claim
-- The first request with this Idempotency-Key claims it; a row older than 24 h is
-- expired and claimed afresh, and so is a claim left unanswered for an hour (its process
-- died before it could release it). Returns nothing when another row stands.
INSERT INTO idempotency_keys AS k (tenant_id, api_key_id, key_id, fingerprint)
VALUES ($1, $2, $3, $4)
ON CONFLICT (tenant_id, api_key_id, key_id) DO UPDATE
   SET fingerprint = EXCLUDED.fingerprint, created_at = now(), status = NULL,
       answer_sealed = NULL
 WHERE k.created_at < now() - interval '24 hours'
    OR (k.status IS NULL AND k.created_at < now() - interval '1 hour')
RETURNING key_id

-- name: existing
SELECT fingerprint, status, answer_sealed FROM idempotency_keys
 WHERE tenant_id = $1 AND api_key_id = $2 AND key_id = $3

-- name: store_answer
UPDATE idempotency_keys SET status = $4, answer_sealed = $5
 WHERE tenant_id = $1 AND api_key_id = $2 AND key_id = $3

-- name: release
-- The first request failed: the key is free for a retry.
DELETE FROM idempotency_keys
 WHERE tenant_id = $1 AND api_key_id = $2 AND key_id = $3 AND status IS NULL

-- name: expire
DELETE FROM idempotency_keys
 WHERE tenant_id = $1 AND created_at < now() - interval '24 hours'
