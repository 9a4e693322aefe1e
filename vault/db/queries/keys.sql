-- name: current_kek_for_write
-- FOR SHARE: a rotation cannot destroy this KEK version while a writer wraps under it.
SELECT version, wrapped_key FROM tenant_keks
 WHERE tenant_id = $1 AND wrapped_key IS NOT NULL
 ORDER BY version DESC LIMIT 1
   FOR SHARE

-- name: lock_subject_for_new_key
-- Before current_kek_for_write when a subject key is created. Not FOR SHARE (what the
-- insert's trigger, dv_key_in_current_generation, takes): the first write of a subject's
-- new life then updates the subject's row (its sealed reference), and two writers each
-- holding FOR SHARE while one waits to update deadlocked (red team 22).
SELECT 1 FROM subjects WHERE tenant_id = $1 AND id = $2 FOR NO KEY UPDATE

-- name: kek_by_version
SELECT wrapped_key FROM tenant_keks WHERE tenant_id = $1 AND version = $2

-- name: find_subject_key
SELECT id, kek_version, wrapped_key FROM subject_keys
 WHERE tenant_id = $1 AND subject_id = $2 AND category = $3 AND generation = $4

-- name: find_subject_key_with_kek
-- One statement, one snapshot: the live subject key for new data and its KEK version.
SELECT s.id, s.kek_version, s.wrapped_key, k.wrapped_key AS kek_wrapped
  FROM subject_keys s
  LEFT JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
 WHERE s.tenant_id = $1 AND s.subject_id = $2 AND s.category = $3 AND s.generation = $4

-- name: insert_subject_key
INSERT INTO subject_keys (tenant_id, id, subject_id, category, generation, kek_version, wrapped_key)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (tenant_id, subject_id, category, generation) DO NOTHING

-- name: subject_key_by_id
-- One statement, one snapshot: the subject key and the KEK version that wraps it.
SELECT s.id, s.subject_id, s.category, s.generation, s.kek_version, s.wrapped_key,
       k.wrapped_key AS kek_wrapped
  FROM subject_keys s
  JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
 WHERE s.tenant_id = $1 AND s.id = $2

-- name: insert_data_key
-- $6: the subject key's version (its bytes) the data key was wrapped under (0018).
INSERT INTO data_keys (tenant_id, id, subject_key_id, purpose, wrapped_key, subject_key_version)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: data_key_by_id
SELECT d.id, d.purpose, d.wrapped_key,
       s.id AS subject_key_id, s.subject_id, s.category, s.generation, s.kek_version,
       s.wrapped_key AS subject_wrapped, k.wrapped_key AS kek_wrapped
  FROM data_keys d
  JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
  JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
 WHERE d.tenant_id = $1 AND d.id = $2

-- name: lock_subject
SELECT generation FROM subjects WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: subject_deletion_state
-- Read after the subject's row lock was granted (a statement of its own, so its snapshot
-- sees what committed before): whether it is restricted, and which generations erasures
-- cover (migration 0016).
SELECT restricted_at, dv_erased_generations(tenant_id, id) AS erased_generations
  FROM subjects WHERE tenant_id = $1 AND id = $2

-- name: data_key_subject
SELECT s.subject_id, s.category, s.generation FROM data_keys d
  JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
 WHERE d.tenant_id = $1 AND d.id = $2

-- name: destroy_data_key
-- Nulls the wrapped key and writes its shred-ledger outbox row (migration 0012); NULL when
-- it was destroyed already.
SELECT dv_destroy_data_key($1, $2)

-- name: destroy_subject_keys
-- A subject's live keys of one generation ($4: those categories, NULL all) that no hold
-- covers destroyed, each with its shred-ledger outbox row ($5: the erasure that asked, or
-- NULL), under the subject's row lock (migration 0033): one row per key, destroyed_at
-- (destroyed now) or hold_ids (kept by those holds).
SELECT key_id, category, destroyed_at, hold_ids
  FROM dv_destroy_subject_keys($1, $2, $3, $4, $5)

-- name: destroy_many_subject_keys
-- destroy_subject_keys for several asks in one statement, one call each, one after another
-- in the order given: $2 subjects, $3 generations, $4 each one's categories (a JSON array;
-- NULL all), $5 the erasures that asked (arrays of one length). The rows name their ask
-- (n, from 1).
SELECT x.n, d.key_id, d.category, d.destroyed_at, d.hold_ids
  FROM unnest($2::uuid[], $3::integer[], $4::jsonb[], $5::uuid[]) WITH ORDINALITY
         AS x(subject_id, generation, categories, erasure_id, n)
 CROSS JOIN LATERAL dv_destroy_subject_keys(
         $1, x.subject_id, x.generation,
         CASE WHEN x.categories IS NOT NULL
              THEN ARRAY(SELECT jsonb_array_elements_text(x.categories)) END,
         x.erasure_id) AS d
 ORDER BY x.n, d.category, d.key_id

-- name: lock_tenant
SELECT status FROM tenants WHERE id = $1 FOR UPDATE

-- name: insert_kek
INSERT INTO tenant_keks (tenant_id, version, wrapped_key, root_epoch) VALUES ($1, $2, $3, $4)

-- name: due_subjects
-- Up to $4 subjects after $3 (in id order) with a live subject key under a KEK version
-- older than $2: the next batch of a rewrap.
SELECT DISTINCT k.subject_id FROM subject_keys k
 WHERE k.tenant_id = $1 AND k.wrapped_key IS NOT NULL AND k.kek_version < $2
   AND ($3::uuid IS NULL OR k.subject_id > $3)
 ORDER BY k.subject_id LIMIT $4

-- name: lock_subjects
-- The batch's subjects, locked in id order while their keys are rewrapped (their
-- writers wait: tens of milliseconds).
SELECT 1 FROM subjects WHERE tenant_id = $1 AND id = ANY($2::uuid[]) ORDER BY id FOR UPDATE

-- name: keys_to_rewrap
-- The subjects' live subject keys under an old KEK version, each with its live data keys
-- (one row per data key; a subject key without any has one row with none), in key order.
SELECT k.id, k.subject_id, k.category, k.generation, k.kek_version, k.wrapped_key,
       d.id AS data_key_id, d.wrapped_key AS data_wrapped
  FROM subject_keys k
  LEFT JOIN data_keys d ON d.tenant_id = k.tenant_id AND d.subject_key_id = k.id
                       AND d.wrapped_key IS NOT NULL
 WHERE k.tenant_id = $1 AND k.subject_id = ANY($2::uuid[]) AND k.wrapped_key IS NOT NULL
   AND k.kek_version < $3
 ORDER BY k.id

-- name: rewrap_subject_keys
-- New bytes under KEK version $2; a key destroyed meanwhile stays destroyed.
UPDATE subject_keys k SET kek_version = $2, wrapped_key = u.wrapped
  FROM unnest($3::uuid[], $4::bytea[]) AS u (id, wrapped)
 WHERE k.tenant_id = $1 AND k.id = u.id AND k.wrapped_key IS NOT NULL

-- name: rewrap_data_keys
-- Rewrapped under their subject key's new bytes (version $2); a key destroyed meanwhile
-- stays destroyed.
UPDATE data_keys d SET wrapped_key = u.wrapped, subject_key_version = $2
  FROM unnest($3::uuid[], $4::bytea[]) AS u (id, wrapped)
 WHERE d.tenant_id = $1 AND d.id = u.id AND d.wrapped_key IS NOT NULL

-- name: old_kek_versions_for_update
SELECT version FROM tenant_keks
 WHERE tenant_id = $1 AND version < $2 AND wrapped_key IS NOT NULL
 ORDER BY version
   FOR UPDATE

-- name: live_subject_keys_under_old_kek
SELECT count(*) FROM subject_keys
 WHERE tenant_id = $1 AND kek_version < $2 AND wrapped_key IS NOT NULL

-- name: notify_kek_destroyed
-- Delivered at commit to every process LISTENing (vault/services/kek_invalidation.py).
SELECT pg_notify('datavault_kek_destroyed', $1::text)

-- name: destroy_old_keks
UPDATE tenant_keks SET wrapped_key = NULL, destroyed_at = now()
 WHERE tenant_id = $1 AND version < $2 AND wrapped_key IS NOT NULL
RETURNING version

-- name: hmac_key_for_update
SELECT wrapped_key, root_epoch FROM tenant_hmac_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL
   FOR UPDATE

-- name: rewrap_hmac_key
UPDATE tenant_hmac_keys SET wrapped_key = $2, root_epoch = $3 WHERE tenant_id = $1

-- name: deployment_secrets_for_update
SELECT name, wrapped, root_epoch FROM deployment_secrets ORDER BY name FOR UPDATE

-- name: rewrap_deployment_secret
UPDATE deployment_secrets SET wrapped = $2, root_epoch = $3 WHERE name = $1

-- name: epochs
SELECT epoch, started_at, ended_at, retired_at, kms_key_id, ledger_seq_at_start
  FROM root_epochs ORDER BY epoch

-- name: record_epoch_key
-- The KMS key of an epoch, recorded once (the vault's epoch list is this table); $3: the
-- shred ledger's head read before the epoch's key was created, for a new epoch (NULL
-- when recording an existing one: its start is not known here).
INSERT INTO root_epochs (epoch, kms_key_id, ledger_seq_at_start) VALUES ($1, $2, $3)
ON CONFLICT (epoch) DO UPDATE SET kms_key_id = coalesce(root_epochs.kms_key_id, EXCLUDED.kms_key_id)

-- name: end_epochs_before
UPDATE root_epochs SET ended_at = now() WHERE epoch < $1 AND ended_at IS NULL

-- name: retire_epoch
UPDATE root_epochs SET retired_at = now() WHERE epoch = $1

-- name: keks_under_epoch
SELECT count(*) FROM tenant_keks WHERE tenant_id = $1 AND root_epoch = $2 AND wrapped_key IS NOT NULL

-- name: hmac_keys_under_epoch
SELECT count(*) FROM tenant_hmac_keys WHERE tenant_id = $1 AND root_epoch = $2 AND wrapped_key IS NOT NULL

-- name: secrets_under_epoch
SELECT count(*) FROM deployment_secrets WHERE root_epoch = $1

-- name: newest_kek_version
SELECT coalesce(max(version), 0) FROM tenant_keks WHERE tenant_id = $1

-- name: record_epoch
-- $2: the shred ledger's head read before the epoch's root key existed (NULL: not known).
INSERT INTO root_epochs (epoch, ledger_seq_at_start) VALUES ($1, $2)
ON CONFLICT (epoch) DO NOTHING

-- name: ledger_head_seq
-- Read before a new epoch's root key exists: every ledger object up to it records keys
-- destroyed before the epoch began (vault/domain/ledger_folding.py).
SELECT coalesce((SELECT seq FROM ledger_head WHERE singleton), 0)
