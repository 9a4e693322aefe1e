-- name: request
-- An erasure request in one statement (dv_erasure_request, migration 0028): the row,
-- whether it was created, and its items (none when created); or, when the tenant's
-- settings were not $10, nothing but them (created NULL).
SELECT created, erasure, items, settings
  FROM dv_erasure_request($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)

-- name: event
INSERT INTO erasure_events (tenant_id, erasure_id, from_status, to_status, api_key_id, detail)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: get
SELECT * FROM erasures WHERE tenant_id = $1 AND id = $2

-- name: get_many
-- The erasures $2 (an array), in no particular order.
SELECT * FROM erasures WHERE tenant_id = $1 AND id = ANY($2::uuid[])

-- name: items_of_many
-- The items of the erasures $2 (an array), each erasure's in the order `items` gives.
SELECT erasure_id, key_id, category, outcome, destroyed_at, hold_ids, kept_until
  FROM erasure_items
 WHERE tenant_id = $1 AND erasure_id = ANY($2::uuid[]) ORDER BY erasure_id, category, key_id

-- name: get_for_update
SELECT * FROM erasures WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: items
SELECT key_id, category, outcome, destroyed_at, hold_ids, kept_until FROM erasure_items
 WHERE tenant_id = $1 AND erasure_id = $2 ORDER BY category, key_id

-- name: list
SELECT * FROM erasures
 WHERE tenant_id = $1 AND ($2::text IS NULL OR status = $2)
   AND ($3::timestamptz IS NULL OR (requested_at, id) < ($3, $4::uuid))
   AND ($6::bytea IS NULL OR subject_ref_hash = $6)
 ORDER BY requested_at DESC, id DESC
 LIMIT $5

-- name: list_changed
-- Erasures whose status or contents changed at or after $2 (updated_at: migration 0023
-- keeps it for item changes too), oldest change first, so a client follows them with the
-- cursor ($4, $5): the last (updated_at, id) it has seen.
SELECT * FROM erasures
 WHERE tenant_id = $1 AND updated_at >= $2
   AND ($3::text IS NULL OR status = $3)
   AND ($4::timestamptz IS NULL OR (updated_at, id) > ($4, $5::uuid))
   AND ($7::bytea IS NULL OR subject_ref_hash = $7)
 ORDER BY updated_at, id
 LIMIT $6

-- name: set_status
-- Only erasure_transitions.py sends this: the erasures $2 (an array: the executor moves a
-- batch at once) from $3 (the status the caller saw) to $4, and each transition's event
-- row ($5 the API key, $6 the detail) in the same statement, written only where the
-- status changed; no row back for one that was not $3.
-- completed_at is set only on completion (a held erasure has not completed).
WITH changed AS (
    UPDATE erasures SET status = $4,
           shredded_at = CASE WHEN $4 = 'in_progress' THEN now() ELSE shredded_at END,
           completed_at = CASE WHEN $4 = 'completed' THEN now() END,
           cancelled_at = CASE WHEN $4 = 'cancelled' THEN now() ELSE cancelled_at END,
           updated_at = now()
     WHERE tenant_id = $1 AND id = ANY($2::uuid[]) AND status = $3
    RETURNING id
)
INSERT INTO erasure_events (tenant_id, erasure_id, from_status, to_status, api_key_id, detail)
SELECT $1, id, $3, $4, $5, $6 FROM changed
RETURNING erasure_id

-- name: release_brake
-- An admin lets a braked erasure through: not_before goes back to what the tenant's
-- grace period alone gives (the caller passes it, never earlier than now).
UPDATE erasures SET not_before = $3, braked = false, updated_at = now()
 WHERE tenant_id = $1 AND id = $2

-- name: claim_due
-- SKIP LOCKED: any number of workers take different instructions, none twice at once.
-- $3: instructions that failed earlier in this pass, left for the next one; $4: how many.
SELECT * FROM erasures
 WHERE tenant_id = $1 AND status = 'scheduled' AND not_before <= $2
   AND id <> ALL($3::uuid[])
 ORDER BY not_before LIMIT $4
   FOR UPDATE SKIP LOCKED

-- name: restored_for_shred
-- Erasures the shred ledger just restored ($2, an array) that cover a subject this
-- database knows: the executor shreds what of their generations it still holds.
SELECT e.* FROM erasures e
 WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[]) AND e.subject_id IS NOT NULL
   AND e.status IN ('in_progress', 'held')
 ORDER BY e.requested_at, e.id
   FOR UPDATE

-- name: claim_held_releasable
-- The next held instruction after ($3, $4) in (requested_at, id) order that something no
-- longer keeps as its items say: a held key none of whose holds is still in force
-- (released, or past expires_at as dv_holds_covering sees it), or a retained key whose
-- statutory retention ended by $2. However many others stay held, these are all retried
-- every pass; the caller's cursor tries each at most once a pass.
SELECT e.* FROM erasures e
 WHERE e.tenant_id = $1 AND e.status = 'held'
   AND ($3::timestamptz IS NULL OR (e.requested_at, e.id) > ($3, $4::uuid))
   AND EXISTS (
       SELECT 1 FROM erasure_items i
        WHERE i.tenant_id = e.tenant_id AND i.erasure_id = e.id
          AND ((i.outcome = 'retained' AND i.kept_until <= $2)
               OR (i.outcome = 'held' AND NOT EXISTS (
                       SELECT 1 FROM holds h
                        WHERE h.tenant_id = i.tenant_id AND h.id = ANY(i.hold_ids)
                          AND dv_hold_in_force(h, now())))))
 ORDER BY e.requested_at, e.id LIMIT 1
   FOR UPDATE OF e SKIP LOCKED

-- name: claim_held_after
-- The rotation through every held instruction, a few a pass, for what the query above
-- cannot see (a tenant shortening keep_at_least_days): the next one after ($2, $3) in
-- (requested_at, id) order.
SELECT * FROM erasures
 WHERE tenant_id = $1 AND status = 'held'
   AND ($2::timestamptz IS NULL OR (requested_at, id) > ($2, $3::uuid))
 ORDER BY requested_at, id LIMIT 1
   FOR UPDATE SKIP LOCKED

-- name: upsert_item
INSERT INTO erasure_items (tenant_id, erasure_id, key_id, category, outcome, destroyed_at, hold_ids)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, erasure_id, key_id) DO UPDATE
   SET outcome = EXCLUDED.outcome, destroyed_at = EXCLUDED.destroyed_at,
       hold_ids = EXCLUDED.hold_ids, kept_until = NULL

-- name: ready_before_barrier
-- The tenant's erasures shredded and with every ledger row published, looked for BEFORE
-- the barrier below: only these may complete after it (awaiting_ledger's $3). Their
-- shreds committed before this look, so before the barrier, which is what the barrier's
-- promise needs; an erasure shredded and published after the barrier (by an inline
-- publish or another process's publisher) waits for the next pass, whose barrier comes
-- after its shred. None: the publisher takes no barrier for the tenant (red team 11: a
-- waiting barrier queues every later hold of the tenant behind it). With each, how many
-- ledger rows it had: a shred added to it after the look (the start-up reconcile
-- re-destroys keys a restored backup brought back under their erasure) makes it wait
-- for the next pass (red team 13).
SELECT e.id, (SELECT count(*) FROM ledger_outbox o WHERE o.tenant_id = e.tenant_id
                 AND o.erasure_id = e.id) AS ledger_rows
  FROM erasures e
 WHERE e.tenant_id = $1 AND e.status = 'in_progress'
   AND NOT EXISTS (SELECT 1 FROM ledger_outbox o WHERE o.tenant_id = e.tenant_id
                     AND o.erasure_id = e.id AND o.published_at IS NULL)

-- name: transfer_barrier
-- Before completion looks for holds (awaiting_ledger): wait for the tenant's hold
-- statements in flight to commit, in a statement of its own (migration 0042). A hold that
-- read its keys live before the shred committed is then visible to the look; one that
-- starts later reads after the shred and finds the key destroyed.
SELECT dv_transfer_barrier($1)

-- name: awaiting_ledger
-- Shredded erasures ready to complete (or be held): every ledger row published, and no
-- running transfer still holds a data key under a subject key the erasure shredded
-- (transfer_keys, migration 0026; a row past held_until holds nothing: that process has
-- cut the transfer by then, or is gone). DESIGN.md: "completed" means no process holds
-- the key any more; an erasure whose keys no transfer holds is not delayed at all.
-- Only among $3, those ready_before_barrier found before the barrier, each with as many
-- ledger rows as it had then ($4).
SELECT e.id, e.subject_id, e.generation,
       EXISTS (SELECT 1 FROM erasure_items i WHERE i.tenant_id = e.tenant_id
                 AND i.erasure_id = e.id AND i.outcome <> 'shredded') AS kept
  FROM erasures e
  JOIN unnest($3::uuid[], $4::bigint[]) AS looked (id, ledger_rows) ON looked.id = e.id
 WHERE e.tenant_id = $1 AND e.status = 'in_progress'
   AND looked.ledger_rows = (SELECT count(*) FROM ledger_outbox o
                              WHERE o.tenant_id = e.tenant_id AND o.erasure_id = e.id)
   AND NOT EXISTS (SELECT 1 FROM ledger_outbox o WHERE o.tenant_id = e.tenant_id
                     AND o.erasure_id = e.id AND o.published_at IS NULL)
   AND NOT EXISTS (SELECT 1 FROM transfer_keys t
                     JOIN data_keys d ON d.tenant_id = t.tenant_id AND d.id = t.data_key_id
                     JOIN erasure_items i ON i.tenant_id = d.tenant_id
                                         AND i.key_id = d.subject_key_id
                    WHERE t.tenant_id = e.tenant_id AND t.held_until > now()
                      AND i.erasure_id = e.id AND i.outcome = 'shredded')
 LIMIT $2
   FOR UPDATE OF e SKIP LOCKED

-- name: current_epoch_start
SELECT started_at FROM root_epochs WHERE retired_at IS NULL ORDER BY epoch DESC LIMIT 1

-- name: store_receipt
INSERT INTO erasure_receipts (tenant_id, erasure_id, final, document)
VALUES ($1, $2, $3, $4::jsonb)
ON CONFLICT (tenant_id, erasure_id, final) DO UPDATE SET document = EXCLUDED.document,
       issued_at = now()

-- name: receipt
SELECT document FROM erasure_receipts WHERE tenant_id = $1 AND erasure_id = $2 AND final = $3

-- name: settle_items
-- Keys an erasure kept that were destroyed since by another path (a tenant's closure):
-- shredded, as far as this erasure is concerned. $2: the erasures (an array).
UPDATE erasure_items i
   SET outcome = 'shredded', destroyed_at = k.destroyed_at, hold_ids = NULL, kept_until = NULL
  FROM subject_keys k
 WHERE i.tenant_id = $1 AND i.erasure_id = ANY($2::uuid[]) AND i.outcome <> 'shredded'
   AND k.tenant_id = i.tenant_id AND k.id = i.key_id AND k.wrapped_key IS NULL

-- name: upsert_retained
INSERT INTO erasure_items (tenant_id, erasure_id, key_id, category, outcome, kept_until)
VALUES ($1, $2, $3, $4, 'retained', $5)
ON CONFLICT (tenant_id, erasure_id, key_id) DO UPDATE
   SET outcome = 'retained', kept_until = EXCLUDED.kept_until, hold_ids = NULL,
       destroyed_at = NULL

-- name: shred_inputs
-- What the executor decides an erasure's shred on, for the erasures $2 (an array) in one
-- statement (issue 19, fourth round: it was a statement per generation, per category
-- and per erasure): every live subject key of the generations each covers
-- (from_generation .. generation, migration 0016), with
-- - newest: the newest artefact or record of the key's category in its generation
--   (statutory retention counts from it), found only for the categories $3 (an array:
--   those the tenant's settings may keep, TenantSettings.categories_retention_may_keep),
--   NULL for the others: it reads every live artefact of the category, so it grew with
--   the subject's artefacts where no retention could use it (issue 19, sixth round);
-- - stated_until: for an erasure restored from the shred ledger (`restored_at`),
--   the `until` it stated for that key: no retry keeps one for less, since the restored
--   settings are older than the ones it was computed from. (A live erasure follows the
--   tenant's settings: a shortened keep_at_least_days binds it after the closure delay.)
SELECT e.id AS erasure_id, k.generation, k.id AS key_id, k.category,
       CASE WHEN k.category = ANY($3::text[]) THEN (SELECT max(created_at) FROM (
            SELECT a.created_at FROM artefacts a WHERE a.tenant_id = k.tenant_id
               AND a.subject_id = k.subject_id AND a.generation = k.generation
               AND a.category = k.category AND a.state = 'active'
            UNION ALL
            SELECT r.created_at FROM records r WHERE r.tenant_id = k.tenant_id
               AND r.subject_id = k.subject_id AND r.generation = k.generation
               AND r.category = k.category AND r.value_sealed IS NOT NULL
        ) AS data) END AS newest,
       (SELECT i.kept_until FROM erasure_items i
         WHERE i.tenant_id = e.tenant_id AND i.erasure_id = e.id AND i.key_id = k.id
           AND i.outcome = 'retained' AND i.kept_until IS NOT NULL
           AND e.restored_at IS NOT NULL) AS stated_until
  FROM erasures e
  JOIN subject_keys k ON k.tenant_id = e.tenant_id AND k.subject_id = e.subject_id
                     AND k.generation BETWEEN e.from_generation AND e.generation
                     AND k.wrapped_key IS NOT NULL
 WHERE e.tenant_id = $1 AND e.id = ANY($2::uuid[])
