-- Instruction entries of the shred ledger (migration 0025; vault/services/ledger_instructions.py).

-- name: record
-- In the caller's transaction, like a destroyed key's row: $2 'erasure' or 'hold', $3 its
-- id, $4 the erasure it belongs to (the erasure completes only once it is published).
-- Stamped with the time of this insert (clock_timestamp), not the transaction's start
-- (now()): a restore takes the newest entry of each thing as its standing instruction,
-- and every caller records while it holds the lock that orders changes to that thing, so
-- the insert's time orders them as they took effect. A transaction that began earlier
-- but waited for the lock (a cancellation behind a repeated request) is the later
-- change and must read as the newer entry (seventh review).
INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, erasure_id, destroyed_at, fact)
VALUES ($1, $2, $3::uuid::text, $4, clock_timestamp(), $5::jsonb)

-- name: erasure
-- The erasures $2 (an array: the executor records a batch at once), each as every ledger
-- entry about an erasure says of it (dv_erasure_identity, migration 0040).
SELECT e.id, dv_erasure_identity(e)::text AS identity
  FROM erasures e WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[])

-- name: erasure_items
SELECT erasure_id, key_id, category, outcome, destroyed_at, hold_ids, kept_until
  FROM erasure_items
 WHERE tenant_id = $1 AND erasure_id = ANY($2::uuid[]) ORDER BY erasure_id, key_id

-- name: hold
SELECT id, subject_ref_hash, categories, reason, placed_at, placed_by, expires_at,
       released_at, released_by, release_requested_at
  FROM holds WHERE tenant_id = $1 AND id = $2

-- name: restore_hold
-- A hold the restored database lacks, as the ledger last recorded it. The case reference
-- and note are free text the ledger does not carry.
INSERT INTO holds (tenant_id, id, subject_ref_hash, categories, reason, reference,
                   placed_at, placed_by, expires_at, released_at, released_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (tenant_id, id) DO NOTHING
RETURNING id

-- name: hold_for_update
SELECT expires_at, released_at FROM holds WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: catch_up_hold
UPDATE holds SET expires_at = $3, released_at = $4, released_by = coalesce(released_by, $5)
 WHERE tenant_id = $1 AND id = $2

-- name: drop_release_request
-- A pending release request other than the one the hold's newest record shows ($3; NULL:
-- none): withdrawn since the backup. Released holds are left as they are.
UPDATE holds SET release_requested_by = NULL, release_requested_at = NULL
 WHERE tenant_id = $1 AND id = $2 AND released_at IS NULL
   AND release_requested_at IS NOT NULL
   AND release_requested_at IS DISTINCT FROM $3::timestamptz
RETURNING id

-- name: journal
INSERT INTO hold_events (tenant_id, hold_id, action, api_key_id, reason)
VALUES ($1, $2, $3, $4, 'restored from the shred ledger')

-- name: restore_erasure
-- An erasure the restored database lacks: held over its generations (what it kept is
-- compliance-only again and shredded when due) or, when it kept nothing, waiting for the
-- ledger publisher, which completes it with its receipt.
INSERT INTO erasures (tenant_id, id, subject_ref_hash, subject_id, generation,
                      from_generation, status, requested_at, requested_by, not_before,
                      due_at, shredded_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now())
ON CONFLICT (tenant_id, id) DO NOTHING
RETURNING id

-- name: shredded_since
-- An erasure the restored database has as still scheduled, which shredded after the
-- backup: it takes the state and generations it ran with.
UPDATE erasures SET status = $3, generation = greatest(generation, $4), from_generation = $5,
       shredded_at = $6, updated_at = now()
 WHERE tenant_id = $1 AND id = $2 AND status = 'scheduled'
RETURNING id

-- name: restore_item
INSERT INTO erasure_items (tenant_id, erasure_id, key_id, category, outcome, destroyed_at,
                           hold_ids, kept_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, erasure_id, key_id) DO NOTHING

-- name: erasure_restored
-- Marks the erasure restored (`restored_at`, what the executor asks: migration 0034) and
-- journals it for people.
WITH marked AS (
    UPDATE erasures SET restored_at = coalesce(restored_at, now())
     WHERE tenant_id = $1 AND id = $2
)
INSERT INTO erasure_events (tenant_id, erasure_id, from_status, to_status, detail)
VALUES ($1, $2, NULL, $3, 'restored from the shred ledger')

-- name: past_erased_generation
-- Later writes start after the generations the erasure covers, as when it was requested.
UPDATE subjects SET generation = $3 + 1
 WHERE tenant_id = $1 AND id = $2 AND generation <= $3

-- name: tenant_known
SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)

-- Instruction entries of migration 0030 (vault/services/ledger_controls.py).

-- name: record_erasure_request
-- The erasure's `erasure_request` entry as it stands in the caller's transaction
-- (dv_record_erasure_request, migration 0040: the request statement writes its own).
SELECT dv_record_erasure_request(e) FROM erasures e
 WHERE e.tenant_id = $1 AND e.id = $2 FOR SHARE

-- name: erasure_state_for_update
SELECT status, generation, subject_id FROM erasures
 WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: subject_known
SELECT EXISTS (SELECT 1 FROM subjects WHERE tenant_id = $1 AND id = $2)

-- name: restore_erasure_request
-- An erasure the restored database lacks, as last recorded before it shredded. Any
-- conflict (the id, or another open erasure of the subject) leaves the row out; the
-- caller then extends the open one.
INSERT INTO erasures (tenant_id, id, subject_ref_hash, subject_id, generation,
                      from_generation, status, requested_at, requested_by, not_before,
                      due_at, braked, cancelled_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
        CASE WHEN $7 = 'cancelled' THEN now() END, now())
ON CONFLICT DO NOTHING
RETURNING id

-- name: extend_scheduled
-- A scheduled erasure covers at least generation $4 of its subject (it was extended, or
-- another erasure of the subject was asked for, after the backup).
UPDATE erasures SET generation = $4, updated_at = now()
 WHERE tenant_id = $1 AND subject_ref_hash = $2 AND subject_id = $3 AND status = 'scheduled'
   AND generation < $4
RETURNING id

-- name: revoke_key
UPDATE api_keys SET revoked_at = $3
 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL
RETURNING id

-- name: closure
SELECT status, closure_requested_at, closure_due_at, closure_requested_by FROM tenants
 WHERE id = $1

-- name: restore_closure
-- A closure requested after the backup, with its due date; also one requested again
-- after the backup's was cancelled (the tenant's standing instruction is the newer one).
-- The reason is free text the ledger does not carry. A closed tenant stays closed.
UPDATE tenants SET status = 'closing', closure_requested_at = $2, closure_due_at = $3,
       closure_requested_by = $4, closure_reason = '(restored from the shred ledger)'
 WHERE id = $1
   AND (status = 'active' OR (status = 'closing' AND closure_requested_at <> $2))
RETURNING id

-- name: drop_cancelled_closure
-- The tenant's newest recorded closure instruction is a cancellation (of the request made
-- at $2): no closure requested then or before stands, whichever of them the restored
-- database holds (a backup taken before a first request, cancelled, then a second request,
-- cancelled too, holds the first). A request newer than $2 is one the ledger has not seen
-- yet, and stands.
UPDATE tenants SET status = 'active', closure_requested_at = NULL, closure_due_at = NULL,
       closure_requested_by = NULL, closure_reason = NULL
 WHERE id = $1 AND status = 'closing' AND closure_requested_at <= $2
RETURNING id

-- Instruction entries of migration 0031 (vault/services/ledger_standing.py).

-- name: subject_by_hash_for_update
SELECT id, restricted_at, restriction_changes FROM subjects
 WHERE tenant_id = $1 AND ref_hash = $2 FOR UPDATE

-- name: restore_restriction
-- The restriction as recorded; its reason is free text the ledger does not carry.
UPDATE subjects SET restricted_at = $3, restriction_reason_sealed = NULL
 WHERE tenant_id = $1 AND id = $2 AND restricted_at IS NULL
RETURNING id

-- name: restricted_subject
-- A subject the restored database does not know (it came after the backup, and so did
-- all its data): there, restricted, so nothing new is written for it. In the generation
-- after every one an erasure of it covers (dv_erasure_from_generation, as an erasure
-- request decides it), since erasures replayed before it (ledger_instructions.py) found
-- no row to move past theirs: its next write must not land in a shredded generation.
-- $5: the restriction change it records (migration 0036; 0 for an entry without one).
INSERT INTO subjects (tenant_id, id, ref_hash, restricted_at, generation, restriction_changes)
VALUES ($1, $2, $3, $4, dv_erasure_from_generation($1, $2), $5)
ON CONFLICT DO NOTHING
RETURNING id

-- name: lift_counted_restriction
-- Lifted by a change counted after every one the restored database has (migration 0036):
-- whatever restriction it holds came before.
UPDATE subjects SET restricted_at = NULL, restriction_reason_sealed = NULL
 WHERE tenant_id = $1 AND id = $2 AND restricted_at IS NOT NULL
RETURNING id

-- name: restriction_counted
-- The restored database counts restriction changes on from the newest it replayed.
UPDATE subjects SET restriction_changes = greatest(restriction_changes, $3)
 WHERE tenant_id = $1 AND id = $2

-- name: lift_recorded_restriction
-- Lifted as recorded at $3: a restriction placed before then (the restored database's).
UPDATE subjects SET restricted_at = NULL, restriction_reason_sealed = NULL
 WHERE tenant_id = $1 AND id = $2 AND restricted_at <= $3
RETURNING id
