-- name: current_kek_for_write
-- FOR SHARE: a rotation cannot destroy this KEK version while a writer wraps under it.
SELECT version, wrapped_key FROM tenant_keks
 WHERE tenant_id = $1 AND wrapped_key IS NOT NULL
 ORDER BY version DESC LIMIT 1
   FOR SHARE

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
INSERT INTO data_keys (tenant_id, id, subject_key_id, purpose, wrapped_key)
VALUES ($1, $2, $3, $4, $5)

-- name: data_key_by_id
SELECT d.id, d.purpose, d.wrapped_key,
       s.id AS subject_key_id, s.subject_id, s.category, s.generation, s.kek_version,
       s.wrapped_key AS subject_wrapped, k.wrapped_key AS kek_wrapped
  FROM data_keys d
  JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
  JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
 WHERE d.tenant_id = $1 AND d.id = $2

-- name: lock_subject
SELECT generation, restricted_at FROM subjects WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: data_key_subject
SELECT s.subject_id, s.category FROM data_keys d
  JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
 WHERE d.tenant_id = $1 AND d.id = $2

-- name: destroy_data_key
-- Nulls the wrapped key and writes its shred-ledger outbox row (migration 0012); NULL when
-- it was destroyed already.
SELECT dv_destroy_data_key($1, $2)

-- name: live_subject_keys_of_generation
SELECT id, category FROM subject_keys
 WHERE tenant_id = $1 AND subject_id = $2 AND generation = $3 AND wrapped_key IS NOT NULL
 ORDER BY category

-- name: destroy_subject_key
-- The key, the data keys under it and its shred-ledger outbox row ($3: the erasure that
-- asked, or NULL), in one statement (migration 0016); NULL when destroyed already.
SELECT dv_destroy_subject_key($1, $2, $3)

-- name: lock_tenant
SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE

-- name: live_kek_versions
SELECT version, wrapped_key, root_epoch FROM tenant_keks
 WHERE tenant_id = $1 AND wrapped_key IS NOT NULL ORDER BY version
   FOR UPDATE

-- name: insert_kek
INSERT INTO tenant_keks (tenant_id, version, wrapped_key, root_epoch) VALUES ($1, $2, $3, $4)

-- name: subject_keys_under_old_kek
SELECT id, subject_id, category, generation, kek_version, wrapped_key FROM subject_keys
 WHERE tenant_id = $1 AND kek_version < $2 AND wrapped_key IS NOT NULL
 ORDER BY id LIMIT $3
   FOR UPDATE SKIP LOCKED

-- name: rewrap_subject_key
UPDATE subject_keys SET kek_version = $3, wrapped_key = $4
 WHERE tenant_id = $1 AND id = $2 AND wrapped_key IS NOT NULL

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
SELECT epoch, started_at, ended_at, retired_at, kms_key_id FROM root_epochs ORDER BY epoch

-- name: record_epoch_key
-- The KMS key of an epoch, recorded once (the vault's epoch list is this table).
INSERT INTO root_epochs (epoch, kms_key_id) VALUES ($1, $2)
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
INSERT INTO root_epochs (epoch) VALUES ($1) ON CONFLICT (epoch) DO NOTHING
