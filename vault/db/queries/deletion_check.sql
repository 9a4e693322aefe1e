-- `datavault check deletion` (workers/deletion_check.py): the deletion invariants, read
-- across every tenant as the read-only role datavault_auditor (migration 0016), in one
-- repeatable-read snapshot. $1 is the check's "now"; $2 its grace (an interval): what a
-- job is about to do anyway (a hold released seconds ago, a retention pass every few
-- minutes) is not reported until the grace has passed.

-- name: erased_generation_keys
-- Live subject keys in a generation an erasure has shredded (in progress, held or
-- completed: from_generation .. generation), with what could still keep them: a hold in
-- force (at any time within the grace) over the subject and category, and the newest
-- data of that category in that generation (statutory retention counts from it).
SELECT k.tenant_id, k.id AS key_id, k.subject_id, k.category, k.generation,
       e.id AS erasure_id, e.status, e.shredded_at,
       EXISTS (SELECT 1 FROM holds h
                WHERE h.tenant_id = k.tenant_id AND dv_hold_in_force(h, $1::timestamptz - $2::interval)
                  AND dv_hold_covers(h, s.ref_hash, k.category)) AS held,
       (SELECT max(d.created_at) FROM (
            SELECT a.created_at FROM artefacts a
             WHERE a.tenant_id = k.tenant_id AND a.subject_id = k.subject_id
               AND a.generation = k.generation AND a.category = k.category
               AND a.state = 'active'
            UNION ALL
            SELECT r.created_at FROM records r
             WHERE r.tenant_id = k.tenant_id AND r.subject_id = k.subject_id
               AND r.generation = k.generation AND r.category = k.category
               AND r.value_sealed IS NOT NULL) AS d) AS newest
  FROM subject_keys k
  JOIN subjects s ON s.tenant_id = k.tenant_id AND s.id = k.subject_id
  JOIN erasures e ON e.tenant_id = k.tenant_id AND e.subject_id = k.subject_id
                 AND k.generation BETWEEN e.from_generation AND e.generation
 WHERE k.wrapped_key IS NOT NULL
   AND e.status IN ('in_progress', 'held', 'completed')
   AND e.shredded_at < $1::timestamptz - $2::interval
 ORDER BY k.tenant_id, k.id

-- name: keys_beyond_generation
-- A subject key in a generation the subject has not reached: no write path makes one.
SELECT k.tenant_id, k.id AS key_id, k.generation, s.generation AS subject_generation
  FROM subject_keys k JOIN subjects s ON s.tenant_id = k.tenant_id AND s.id = k.subject_id
 WHERE k.generation > s.generation
 LIMIT 1000

-- name: deleted_versions_live
-- Live data keys of what was deleted or replaced: a deleted artefact (its key goes in the
-- transaction that deletes it), an upload abandoned more than a day ago (the sweeper's
-- work), a record version retired with its value dropped, or retired with its value kept
-- while no hold (within the grace) covers it any more. A version in a generation an
-- erasure covers is kept or destroyed with its subject key (erased_generation_keys).
SELECT a.tenant_id, a.data_key_id AS key_id, 'artefact ' || a.id || ' (' || a.state || ')' AS what
  FROM artefacts a JOIN data_keys d ON d.tenant_id = a.tenant_id AND d.id = a.data_key_id
 WHERE d.wrapped_key IS NOT NULL
   AND (a.state = 'deleted'
        OR (a.state = 'uploading' AND a.created_at < $1::timestamptz - interval '1 day' - $2::interval))
UNION ALL
SELECT r.tenant_id, r.data_key_id, 'record version ' || r.subject_id || '/' || r.name || '/' || r.version
  FROM records r
  JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
  JOIN data_keys d ON d.tenant_id = r.tenant_id AND d.id = r.data_key_id
 WHERE d.wrapped_key IS NOT NULL AND NOT r.current
   AND NOT (r.generation = ANY (dv_erased_generations(r.tenant_id, r.subject_id)))
   AND (r.value_sealed IS NULL
        OR (r.superseded_at < $1::timestamptz - $2::interval
            AND NOT EXISTS (SELECT 1 FROM holds h
                             WHERE h.tenant_id = r.tenant_id
                               AND dv_hold_in_force(h, $1::timestamptz - $2::interval)
                               AND dv_hold_covers(h, s.ref_hash, r.category))))
LIMIT 1000

-- name: expired_live
-- Data of one tenant and category older than $4 (now - delete_after_days - grace) whose
-- key is live although no hold covers it and its subject is not restricted; the caller
-- asks statutory retention (TenantSettings.kept_until) about each.
SELECT 'artefact' AS kind, a.id::text AS item, a.data_key_id AS key_id, a.created_at
  FROM artefacts a
  JOIN subjects s ON s.tenant_id = a.tenant_id AND s.id = a.subject_id
  JOIN data_keys d ON d.tenant_id = a.tenant_id AND d.id = a.data_key_id
 WHERE a.tenant_id = $3 AND a.category = $5 AND a.state = 'active' AND a.created_at < $4
   AND d.wrapped_key IS NOT NULL AND s.restricted_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM holds h
                    WHERE h.tenant_id = a.tenant_id AND dv_hold_in_force(h, $1::timestamptz - $2::interval)
                      AND dv_hold_covers(h, s.ref_hash, a.category))
UNION ALL
SELECT 'record', r.subject_id || '/' || r.name || '/' || r.version, r.data_key_id, r.created_at
  FROM records r
  JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
  JOIN data_keys d ON d.tenant_id = r.tenant_id AND d.id = r.data_key_id
 WHERE r.tenant_id = $3 AND r.category = $5 AND r.current AND r.created_at < $4
   AND r.value_sealed IS NOT NULL AND d.wrapped_key IS NOT NULL AND s.restricted_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM holds h
                    WHERE h.tenant_id = r.tenant_id AND dv_hold_in_force(h, $1::timestamptz - $2::interval)
                      AND dv_hold_covers(h, s.ref_hash, r.category))
LIMIT 1000

-- name: destroyed_not_in_ledger
-- Destroyed keys with no shred-ledger outbox row: a subject key (erasure, closure), or a
-- data key destroyed on its own (delete, replace, retention, abandoned upload) whose
-- subject key still lives. Data keys destroyed before migration 0012 (when the ledger
-- began to record them) are not asked about.
SELECT k.tenant_id, 'subject' AS kind, k.id::text AS key_id FROM subject_keys k
 WHERE k.wrapped_key IS NULL
   AND NOT EXISTS (SELECT 1 FROM ledger_outbox o
                    WHERE o.tenant_id = k.tenant_id AND o.key_kind = 'subject'
                      AND o.key_id = k.id::text)
UNION ALL
SELECT d.tenant_id, 'data', d.id::text FROM data_keys d
  JOIN subject_keys k ON k.tenant_id = d.tenant_id AND k.id = d.subject_key_id
 WHERE d.wrapped_key IS NULL AND k.wrapped_key IS NOT NULL
   AND d.destroyed_at > (SELECT applied_at FROM schema_migrations WHERE version = 12)
   AND NOT EXISTS (SELECT 1 FROM ledger_outbox o
                    WHERE o.tenant_id = d.tenant_id AND o.key_kind = 'data'
                      AND o.key_id = d.id::text)
LIMIT 1000

-- name: ledger_lagging
-- Destroyed keys not published to the shred ledger (outside PostgreSQL) within the grace.
SELECT tenant_id, key_kind AS kind, key_id FROM ledger_outbox
 WHERE published_at IS NULL AND destroyed_at < $1::timestamptz - $2::interval
 ORDER BY destroyed_at
 LIMIT 1000

-- name: erasures_wrong
-- Erasures past their due date and not done, and completed ones whose ledger rows are
-- not all published.
SELECT e.tenant_id, e.id AS erasure_id, e.status,
       CASE WHEN e.status IN ('scheduled', 'in_progress') AND e.due_at < $1 THEN 'overdue'
            ELSE 'completed_before_ledger' END AS problem
  FROM erasures e
 WHERE (e.status IN ('scheduled', 'in_progress') AND e.due_at < $1)
    OR (e.status = 'completed'
        AND EXISTS (SELECT 1 FROM ledger_outbox o
                     WHERE o.tenant_id = e.tenant_id AND o.erasure_id = e.id
                       AND o.published_at IS NULL))
 LIMIT 1000

-- name: closed_tenants_live
-- A closed tenant keeps only what holds keep, and it is closed only once nothing is kept
-- (workers/closure.py): no live KEK, HMAC key or subject key.
SELECT t.id AS tenant_id,
       (SELECT count(*) FROM tenant_keks k WHERE k.tenant_id = t.id AND k.wrapped_key IS NOT NULL)
           AS live_keks,
       (SELECT count(*) FROM tenant_hmac_keys m
         WHERE m.tenant_id = t.id AND m.wrapped_key IS NOT NULL) AS live_hmac,
       (SELECT count(*) FROM subject_keys s
         WHERE s.tenant_id = t.id AND s.wrapped_key IS NOT NULL) AS live_subject_keys
  FROM tenants t WHERE t.status = 'closed'

-- name: closures_overdue
-- A tenant still closing past its due date (and the grace) while no hold keeps any of its
-- live keys: its closure's passes did not run or were aborted every time
-- (workers/closure.py `closure_deferred`). A hold placed, and in force, a grace ago that
-- covers a live subject key is what rightly keeps a closure open; one that covers
-- nothing live, or came only since, does not (red team 23).
SELECT t.id AS tenant_id, t.closure_due_at
  FROM tenants t
 WHERE t.status = 'closing' AND t.closure_due_at < $1::timestamptz - $2::interval
   AND NOT EXISTS (
         SELECT 1 FROM subject_keys k
           JOIN subjects s ON s.tenant_id = k.tenant_id AND s.id = k.subject_id
           JOIN holds h ON h.tenant_id = k.tenant_id
          WHERE k.tenant_id = t.id AND k.wrapped_key IS NOT NULL
            AND h.placed_at <= $1::timestamptz - $2::interval
            AND dv_hold_in_force(h, $1::timestamptz - $2::interval)
            AND dv_hold_covers(h, s.ref_hash, k.category))

-- name: tenant_settings
SELECT id, settings FROM tenants WHERE status <> 'closed' ORDER BY id
