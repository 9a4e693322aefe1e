-- name: current_for_update
SELECT name, version, category, data_key_id, created_at FROM records
 WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 AND current
   FOR UPDATE

-- name: retire_current
SELECT dv_retire_record($1, $2, $3, $4, $5)

-- Request functions (migration 0011) take the tenant, then the API key whose liveness
-- they check first (NULL: already checked), then their own arguments.

-- name: read
-- GET: subject, current version and its key chain in one snapshot and one round trip.
-- Key columns are named as keys.sql `data_key_by_id` names them (KeyRing.open_data_key).
SELECT * FROM dv_record_read($1, $2, $3, $4)

-- name: ever_existed
SELECT 1 FROM records WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 LIMIT 1

-- name: list_page
SELECT * FROM dv_record_list($1, $2, $3, $4, $5, $6, $7)

-- name: write_state
SELECT * FROM dv_record_write_state($1, $2, $3, $4, $5)

-- name: write
SELECT * FROM dv_record_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)

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
