-- name: insert_uploading
INSERT INTO artefacts (tenant_id, id, subject_id, category, generation, data_key_id, blob_key,
                       state, content_type, segment_size, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'uploading', $8, $9,
        CASE WHEN $10::int IS NULL THEN NULL ELSE now() + make_interval(days => $10::int) END)
RETURNING created_at, expires_at

-- name: complete
-- $5: the API key that uploaded it, checked in this statement (dv_require_live_key
-- raises DV401 if it was revoked or its tenant closed): an upload whose key was revoked
-- while its body streamed never becomes visible.
-- The subject is read again under its row lock, as dv_record_write does for records
-- (shared: uploads of one subject still complete side by side; restricting it updates
-- the row and so waits for this transaction, or this waits and re-reads the row). An
-- upload overtaken by a restriction while its body streamed gets id NULL and the
-- subject's restricted_at (the caller refuses it and shreds what it wrote); a
-- restriction after this commit finds the artefact complete.
-- id NULL and restricted_at NULL: the artefact is no longer uploading (an erasure
-- shredded it meanwhile).
WITH key_live AS (SELECT true AS live FROM dv_require_live_key($1, $5)),
subject AS (
    SELECT s.restricted_at FROM subjects s
      JOIN artefacts a ON a.tenant_id = s.tenant_id AND a.subject_id = s.id
     WHERE a.tenant_id = $1 AND a.id = $2
       FOR SHARE OF s),
completed AS (
    UPDATE artefacts SET state = 'active', size = $3, metadata_sealed = $4
     WHERE tenant_id = $1 AND id = $2 AND state = 'uploading'
       AND EXISTS (SELECT 1 FROM key_live)
       AND EXISTS (SELECT 1 FROM subject WHERE restricted_at IS NULL)
    RETURNING id)
SELECT (SELECT id FROM completed) AS id, (SELECT restricted_at FROM subject) AS restricted_at

-- name: abandon
UPDATE artefacts SET state = 'deleted', deleted_at = now()
 WHERE tenant_id = $1 AND id = $2 AND state = 'uploading'

-- name: still_active
-- Whether the artefact is still there (its blob missing under a read: deleted since the
-- read found it, or the store lost it).
SELECT state = 'active' FROM artefacts WHERE tenant_id = $1 AND id = $2

-- name: get
SELECT id, subject_id, category, generation, data_key_id, blob_key, state, content_type, size,
       segment_size, metadata_sealed, created_at, expires_at, deleted_at
  FROM artefacts WHERE tenant_id = $1 AND id = $2 AND subject_id = $3

-- name: list
SELECT id, subject_id, category, generation, data_key_id, blob_key, state, content_type, size,
       segment_size, metadata_sealed, created_at, expires_at, deleted_at
  FROM artefacts
 WHERE tenant_id = $1 AND subject_id = $2 AND state = 'active'
   AND ($3::text IS NULL OR category = $3)
   AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
   AND NOT (generation = ANY($7::int[]))
 ORDER BY created_at DESC, id DESC
 LIMIT $6

-- name: mark_deleted
UPDATE artefacts SET state = 'deleted', deleted_at = now(), metadata_sealed = NULL
 WHERE tenant_id = $1 AND id = $2 AND state = 'active'

-- name: blob_removed
UPDATE artefacts SET blob_removed_at = now() WHERE tenant_id = $1 AND id = $2

-- name: expired
-- Retention: active artefacts of one category older than its delete_after_days, after
-- ($4, $5) in (created_at, id) order. Those a hold in force covers (dv_held_now,
-- migration 0014), restricted subjects' data (restriction freezes deletion) and data in a
-- generation an erasure covers (only that erasure destroys what it keeps) are left out: they stay until their last hold goes, and any
-- number of them must not fill the batch ahead of what may go now.
SELECT a.id, a.data_key_id, a.blob_key, a.created_at FROM artefacts a
  JOIN subjects s ON s.tenant_id = a.tenant_id AND s.id = a.subject_id
 WHERE a.tenant_id = $1 AND a.category = $2 AND a.state = 'active' AND a.created_at < $3
   AND ($4::timestamptz IS NULL OR (a.created_at, a.id) > ($4, $5::uuid))
   AND NOT dv_held_now(a.tenant_id, s.ref_hash, a.category)
   AND s.restricted_at IS NULL
   AND NOT (a.generation = ANY (dv_erased_generations(a.tenant_id, a.subject_id)))
 ORDER BY a.created_at, a.id LIMIT $6

-- name: cleanup_due
-- Deleted artefacts whose blob is still there, and uploads abandoned by a crash.
SELECT id, data_key_id, blob_key, state FROM artefacts
 WHERE tenant_id = $1
   AND ((state = 'deleted' AND blob_removed_at IS NULL) OR (state = 'uploading' AND created_at < $2))
 ORDER BY created_at LIMIT $3

-- name: read
-- The subject, the artefact and its data key's chain in one statement (migration 0024);
-- $2: the request's API key to check for liveness, or NULL.
SELECT * FROM dv_artefact_read($1, $2, $3, $4)

-- name: read_held
-- `read`, and transfer $5 holds the artefact's data key for $6 seconds from the same
-- statement (migration 0032): a download's or range read's hold without a round trip of
-- its own. `held` says whether it does. $7 false: a read answered in one message, whose
-- hold need not wait for its own WAL flush (its access-log commit flushes it).
SELECT * FROM dv_artefact_read_held($1, $2, $3, $4, $5, $6, $7)
