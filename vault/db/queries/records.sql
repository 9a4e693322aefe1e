-- name: current_for_update
SELECT name, version, category, data_key_id, created_at FROM records
 WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 AND current
   FOR UPDATE

-- name: insert_next_version
-- The next version number and the row in one statement; the writer holds the subject's
-- row lock, so no other writer of this record is between the two.
INSERT INTO records (tenant_id, subject_id, name, version, category, generation, data_key_id,
                     value_sealed, size, current)
SELECT $1, $2, $3, coalesce(max(version), 0) + 1, $4, $5, $6, $7, $8, true
  FROM records WHERE tenant_id = $1 AND subject_id = $2 AND name = $3
RETURNING version, created_at

-- name: retire_current
-- shredded = true: the version's key is destroyed, so its sealed value goes too.
UPDATE records SET current = false, superseded_at = now(),
       value_sealed = CASE WHEN $5 THEN NULL ELSE value_sealed END
 WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 AND version = $4

-- name: get_current_with_key
-- One statement, one snapshot: the current version and its whole key chain. Read in two,
-- a replace committing in between would show the old version with its key just destroyed.
-- Key columns are named as keys.sql `data_key_by_id` names them (KeyRing.open_data_key).
SELECT r.version, r.generation AS record_generation, r.value_sealed,
       d.id, d.purpose, d.wrapped_key,
       s.id AS subject_key_id, s.subject_id, s.category, s.generation, s.kek_version,
       s.wrapped_key AS subject_wrapped, k.wrapped_key AS kek_wrapped
  FROM records r
  LEFT JOIN data_keys d ON d.tenant_id = r.tenant_id AND d.id = r.data_key_id
  LEFT JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
  LEFT JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
 WHERE r.tenant_id = $1 AND r.subject_id = $2 AND r.name = $3 AND r.current

-- name: ever_existed
SELECT 1 FROM records WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 LIMIT 1

-- name: list
SELECT name, version, category, created_at FROM records
 WHERE tenant_id = $1 AND subject_id = $2 AND current AND value_sealed IS NOT NULL
   AND ($3::timestamptz IS NULL OR (created_at, name) < ($3, $4::text))
   AND NOT (generation = ANY($6::int[]))
 ORDER BY created_at DESC, name DESC
 LIMIT $5

-- name: all_current
SELECT name, version, category, data_key_id, value_sealed, created_at FROM records
 WHERE tenant_id = $1 AND subject_id = $2 AND current AND value_sealed IS NOT NULL
   AND NOT (generation = ANY($3::int[]))
 ORDER BY name

-- name: expired
-- Retention: current record versions of one category older than its delete_after_days.
SELECT subject_id, name, version, data_key_id FROM records
 WHERE tenant_id = $1 AND category = $2 AND current AND value_sealed IS NOT NULL
   AND created_at < $3
 ORDER BY created_at LIMIT $4
