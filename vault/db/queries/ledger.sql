-- name: ensure_head
INSERT INTO ledger_head (singleton, seq, entry_hash) VALUES (true, 0, $1)
ON CONFLICT (singleton) DO NOTHING

-- name: lock_head
SELECT seq, entry_hash, signed_from FROM ledger_head WHERE singleton FOR UPDATE

-- name: get_head
SELECT seq, entry_hash, signed_from FROM ledger_head WHERE singleton

-- name: record_signed_from
-- The chain's first signed object (migration 0027): kept once known.
UPDATE ledger_head SET signed_from = $1 WHERE singleton AND signed_from IS NULL

-- name: update_head
UPDATE ledger_head SET seq = $1, entry_hash = $2, updated_at = now() WHERE singleton

-- name: pending_tenants
-- Only the tenants with rows to publish (migration 0029), in the directory's order.
SELECT id FROM dv_ledger_pending_tenants()

-- name: pending
SELECT id, key_kind, key_id, erasure_id, destroyed_at, fact FROM ledger_outbox
 WHERE tenant_id = $1 AND published_at IS NULL ORDER BY id LIMIT $2

-- name: mark_published
-- By outbox id and key id both: after a backup was restored, ledger entries written
-- from the lost rows carry outbox ids the restored sequence hands out again.
UPDATE ledger_outbox o SET published_at = now(), ledger_seq = $4
  FROM unnest($2::bigint[], $3::text[]) AS l (id, key_id)
 WHERE o.tenant_id = $1 AND o.id = l.id AND o.key_id = l.key_id AND o.published_at IS NULL

-- A restored backup can hold keys the ledger says were destroyed: destroy them again,
-- each with the time the ledger recorded. $2/$3: key ids and their destroyed_at.
-- name: redestroy_subject_keys
-- With all they take with them; a subject whose current generation lost its keys moves
-- on to the next (migration 0018).
SELECT dv_redestroy_subject_keys($1, $2::uuid[], $3::timestamptz[])

-- name: redestroy_data_keys
-- With the artefact or record version each sealed: deleted, as when it was first shred.
WITH gone AS (
    UPDATE data_keys d SET wrapped_key = NULL,
                           destroyed_at = coalesce(d.destroyed_at, l.destroyed_at)
      FROM unnest($2::uuid[], $3::timestamptz[]) AS l (id, destroyed_at)
     WHERE d.tenant_id = $1 AND d.id = l.id AND d.wrapped_key IS NOT NULL
    RETURNING d.id, d.destroyed_at
), artefacts_gone AS (
    UPDATE artefacts a SET state = 'deleted', metadata_sealed = NULL,
                           deleted_at = coalesce(a.deleted_at, gone.destroyed_at)
      FROM gone
     WHERE a.tenant_id = $1 AND a.data_key_id = gone.id AND a.state IN ('active', 'uploading')
), records_gone AS (
    UPDATE records r SET value_sealed = NULL, current = false,
                         superseded_at = coalesce(r.superseded_at, gone.destroyed_at)
      FROM gone
     WHERE r.tenant_id = $1 AND r.data_key_id = gone.id
)
SELECT count(*) FROM gone

-- name: redestroy_keks
UPDATE tenant_keks k SET wrapped_key = NULL, destroyed_at = coalesce(k.destroyed_at, l.destroyed_at)
  FROM unnest($2::integer[], $3::timestamptz[]) AS l (version, destroyed_at)
 WHERE k.tenant_id = $1 AND k.version = l.version AND k.wrapped_key IS NOT NULL

-- name: redestroy_hmac_key
-- Only a tenant's closure destroys its HMAC key: the restored tenant is closed again.
WITH gone AS (
    UPDATE tenant_hmac_keys SET wrapped_key = NULL, destroyed_at = $2
     WHERE tenant_id = $1 AND wrapped_key IS NOT NULL
    RETURNING tenant_id
), closed AS (
    UPDATE tenants t SET status = 'closed', closed_at = coalesce(t.closed_at, $2)
      FROM gone WHERE t.id = gone.tenant_id AND t.status <> 'closed'
)
SELECT count(*) FROM gone

-- name: record_reconciled
-- Keys the ledger names that this database holds no outbox row for (a restored backup):
-- recorded as published in the entry that names them.
INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, erasure_id, destroyed_at,
                           published_at, ledger_seq)
SELECT $1, l.kind, l.key_id, l.erasure_id, l.destroyed_at, now(), l.seq
  FROM unnest($2::text[], $3::text[], $4::uuid[], $5::timestamptz[], $6::bigint[])
       AS l (kind, key_id, erasure_id, destroyed_at, seq)
 WHERE NOT EXISTS (SELECT 1 FROM ledger_outbox o
                    WHERE o.tenant_id = $1 AND o.key_kind = l.kind AND o.key_id = l.key_id)

-- name: epoch_starts
-- The ledger head each root-key epoch began at (migration 0022; NULL: not recorded).
SELECT epoch, ledger_seq_at_start FROM root_epochs ORDER BY epoch

-- name: record_folded
-- How far the ledger is folded into checkpoints, for the gauges (the checkpoints in the
-- blob store are what every check reads).
UPDATE ledger_head SET folded_through = $1, folded_at = $2
 WHERE singleton AND folded_through < $1
