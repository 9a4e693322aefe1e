-- Receipt signing keys (deployment-wide, table receipt_keys of 0005_erasure.sql).

-- name: lock_receipt_keys
-- Serialises first-start key creation across processes (released at commit);
-- the number is b"dvrcptk1" as a big-endian bigint.
SELECT pg_advisory_xact_lock(7239099222458657585)

-- name: active_receipt_key
SELECT kid, public_key, private_wrapped, root_epoch FROM receipt_keys
WHERE retired_at IS NULL AND private_wrapped IS NOT NULL
ORDER BY created_at DESC, kid DESC
LIMIT 1

-- name: insert_receipt_key
INSERT INTO receipt_keys (kid, public_key, private_wrapped, root_epoch) VALUES ($1, $2, $3, $4)

-- name: published_receipt_keys
SELECT kid, public_key, created_at, retired_at FROM receipt_keys ORDER BY created_at, kid

-- name: receipt_keys_for_update
SELECT kid, private_wrapped, root_epoch FROM receipt_keys
WHERE private_wrapped IS NOT NULL ORDER BY kid FOR UPDATE

-- name: rewrap_receipt_key
UPDATE receipt_keys SET private_wrapped = $2, root_epoch = $3 WHERE kid = $1

-- name: receipt_keys_under_epoch
SELECT count(*) FROM receipt_keys WHERE root_epoch = $1 AND private_wrapped IS NOT NULL
