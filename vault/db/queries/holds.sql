-- name: insert
INSERT INTO holds (tenant_id, id, subject_ref_hash, categories, reason, reference, note,
                   placed_by, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)

-- name: journal
INSERT INTO hold_events (tenant_id, hold_id, action, api_key_id, ip, reason)
VALUES ($1, $2, $3, $4, $5::inet, $6)

-- name: get
SELECT h.*, dv_hold_in_force(h, now()) AS in_force FROM holds h WHERE tenant_id = $1 AND id = $2

-- name: get_for_update
SELECT h.*, dv_hold_in_force(h, now()) AS in_force FROM holds h
 WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: events
SELECT at, action, api_key_id, host(ip) AS ip, reason FROM hold_events
 WHERE tenant_id = $1 AND hold_id = $2 ORDER BY seq

-- name: list
SELECT h.*, dv_hold_in_force(h, now()) AS in_force FROM holds h
 WHERE tenant_id = $1
   AND (NOT $2::boolean OR dv_hold_in_force(h, now()))
   AND ($3::bytea IS NULL OR subject_ref_hash = $3 OR subject_ref_hash IS NULL)
   AND ($4::timestamptz IS NULL OR (placed_at, id) < ($4, $5::uuid))
   AND ($7::text IS NULL OR reason = $7)
 ORDER BY placed_at DESC, id DESC
 LIMIT $6

-- name: update_terms
UPDATE holds SET expires_at = $3, note = $4 WHERE tenant_id = $1 AND id = $2

-- name: request_release
UPDATE holds SET release_requested_by = $3, release_requested_at = now()
 WHERE tenant_id = $1 AND id = $2

-- name: withdraw_release
UPDATE holds SET release_requested_by = NULL, release_requested_at = NULL
 WHERE tenant_id = $1 AND id = $2

-- name: release
UPDATE holds SET released_at = now(), released_by = $3 WHERE tenant_id = $1 AND id = $2

-- name: covering
-- Active holds over one subject and some categories, ordered against a hold being placed
-- (migration 0011). The caller holds the subject's row lock.
SELECT id, categories FROM dv_holds_covering($1, $2, $3)

-- name: lock_tenant_holds
-- Placing a tenant-wide hold waits for destroy checks in flight (migration 0011).
SELECT pg_advisory_xact_lock(dv_holds_lock_key($1))

-- name: lock_subject_by_ref
SELECT id FROM subjects WHERE tenant_id = $1 AND ref_hash = $2 FOR UPDATE

-- name: newly_expired
UPDATE holds SET expired_at = now()
 WHERE tenant_id = $1 AND released_at IS NULL AND expired_at IS NULL
   AND expires_at IS NOT NULL AND expires_at <= now()
RETURNING id, subject_ref_hash, categories, reason, placed_at, expires_at

-- name: impact
-- What releasing this hold would shred now: keys kept by erasures only because of it
-- (no other active hold covers them), by category.
SELECT i.category, count(*) AS keys, count(DISTINCT i.erasure_id) AS erasures
  FROM erasure_items i
  JOIN erasures e ON e.tenant_id = i.tenant_id AND e.id = i.erasure_id
 WHERE i.tenant_id = $1 AND i.outcome = 'held' AND e.status = 'held'
   AND $2 = ANY(i.hold_ids)
   AND NOT EXISTS (
       SELECT 1 FROM holds h JOIN subjects s ON s.tenant_id = e.tenant_id AND s.id = e.subject_id
        WHERE h.tenant_id = i.tenant_id AND h.id <> $2
          AND dv_hold_in_force(h, now()) AND dv_hold_covers(h, s.ref_hash, i.category))
 GROUP BY i.category ORDER BY i.category
