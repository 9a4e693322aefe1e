-- name: request
UPDATE tenants SET status = 'closing', closure_requested_at = now(), closure_due_at = $2,
       closure_requested_by = $3, closure_reason = $4
 WHERE id = $1 AND status = 'active'
RETURNING closure_due_at

-- name: cancel
-- Returns the cancelled request's time (the shred ledger records which one was cancelled).
UPDATE tenants t SET status = 'active', closure_requested_at = NULL, closure_due_at = NULL,
       closure_requested_by = NULL, closure_reason = NULL
  FROM (SELECT closure_requested_at FROM tenants WHERE id = $1 FOR UPDATE) AS before
 WHERE t.id = $1 AND t.status = 'closing' AND t.closure_due_at > now()
RETURNING before.closure_requested_at

-- name: state
SELECT status, closure_requested_at, closure_due_at, closed_at FROM tenants WHERE id = $1

-- name: due
SELECT status, closure_due_at FROM tenants WHERE id = $1 AND status = 'closing' AND closure_due_at <= $2
   FOR UPDATE

-- name: live_generations
-- In subject id order, as every locker of several subjects takes them (a key rotation's
-- rewrap batch): a hashed DISTINCT's order made a cycle with it (red team 23).
SELECT DISTINCT subject_id, generation FROM subject_keys
 WHERE tenant_id = $1 AND wrapped_key IS NOT NULL
 ORDER BY subject_id, generation

-- name: live_kek_versions
SELECT version FROM tenant_keks WHERE tenant_id = $1 AND wrapped_key IS NOT NULL

-- name: lock_live_keks
-- Waits out the writers wrapping a new subject key under one (they hold it FOR SHARE).
SELECT version FROM tenant_keks
 WHERE tenant_id = $1 AND wrapped_key IS NOT NULL
 ORDER BY version
   FOR UPDATE

-- name: destroy_keks
-- Each version with its shred-ledger row (migration 0016).
SELECT * FROM dv_destroy_tenant_keks($1)

-- name: destroy_hmac_key
SELECT dv_destroy_hmac_key($1)

-- name: closed
UPDATE tenants SET status = 'closed', closed_at = now() WHERE id = $1

-- name: closed_with_live_keys
-- A closed tenant that still holds a live key of its own (a restored backup).
SELECT id FROM tenants t
 WHERE t.id = $1 AND t.status = 'closed'
   AND (EXISTS (SELECT 1 FROM tenant_keks k WHERE k.tenant_id = t.id AND k.wrapped_key IS NOT NULL)
        OR EXISTS (SELECT 1 FROM tenant_hmac_keys m
                    WHERE m.tenant_id = t.id AND m.wrapped_key IS NOT NULL)
        OR EXISTS (SELECT 1 FROM subject_keys s
                    WHERE s.tenant_id = t.id AND s.wrapped_key IS NOT NULL))
