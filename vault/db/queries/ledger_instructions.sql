-- Instruction entries of the shred ledger (migration 0025; vault/services/ledger_instructions.py).

-- name: record
-- In the caller's transaction, like a destroyed key's row: $2 'erasure' or 'hold', $3 its
-- id, $4 the erasure it belongs to (the erasure completes only once it is published).
INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, erasure_id, destroyed_at, fact)
VALUES ($1, $2, $3::uuid::text, $4, now(), $5::jsonb)

-- name: erasure
SELECT id, subject_ref_hash, subject_id, from_generation, generation, requested_at,
       requested_by, not_before, due_at
  FROM erasures WHERE tenant_id = $1 AND id = $2

-- name: erasure_items
SELECT key_id, category, outcome, destroyed_at, hold_ids, kept_until FROM erasure_items
 WHERE tenant_id = $1 AND erasure_id = $2 ORDER BY key_id

-- name: hold
SELECT id, subject_ref_hash, categories, reason, placed_at, placed_by, expires_at,
       released_at, released_by
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

-- name: restore_item
INSERT INTO erasure_items (tenant_id, erasure_id, key_id, category, outcome, destroyed_at,
                           hold_ids, kept_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (tenant_id, erasure_id, key_id) DO NOTHING

-- name: erasure_restored
INSERT INTO erasure_events (tenant_id, erasure_id, from_status, to_status, detail)
VALUES ($1, $2, NULL, $3, 'restored from the shred ledger')

-- name: past_erased_generation
-- Later writes start after the generations the erasure covers, as when it was requested.
UPDATE subjects SET generation = $3 + 1
 WHERE tenant_id = $1 AND id = $2 AND generation <= $3

-- name: tenant_known
SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)
