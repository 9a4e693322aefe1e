-- name: current_for_update
SELECT name, version, category, generation, data_key_id, created_at FROM records
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

-- name: read_held
-- `read`, and transfer $5 holds the record's data key for $6 seconds from the same
-- statement, committed without its own WAL flush (the access-log commit the answer waits
-- for flushes and confirms it; migration 0037). `held` says whether it does.
SELECT * FROM dv_record_read_held($1, $2, $3, $4, $5, $6)

-- name: ever_existed
SELECT 1 FROM records WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 LIMIT 1

-- name: list_page
SELECT * FROM dv_record_list($1, $2, $3, $4, $5, $6, $7)

-- name: write_state
-- With next_version: the version a value written now gets, which its sealing names.
SELECT * FROM dv_record_write_state($1, $2, $3, $4, $5)

-- name: write
-- $9: the version the value was sealed for (no row if that is no longer the next one);
-- $15: the subject key's version the new data key was wrapped under (no row if the
-- subject key has been rewrapped since: migration 0018).
SELECT * FROM dv_record_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                              $15::integer)

-- name: expired
-- Retention: current record versions of one category older than its delete_after_days,
-- after ($4, $5, $6) in (created_at, subject_id, name) order (one current version per
-- name). Those a hold in force covers are left out, as in artefacts.sql `expired`.
SELECT r.subject_id, r.name, r.version, r.data_key_id, r.created_at FROM records r
  JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
 WHERE r.tenant_id = $1 AND r.category = $2 AND r.current AND r.value_sealed IS NOT NULL
   AND r.created_at < $3
   AND ($4::timestamptz IS NULL OR (r.created_at, r.subject_id, r.name) > ($4, $5::uuid, $6))
   AND NOT dv_held_now(r.tenant_id, s.ref_hash, r.category)
   AND s.restricted_at IS NULL
   AND NOT (r.generation = ANY (dv_erased_generations(r.tenant_id, r.subject_id)))
 ORDER BY r.created_at, r.subject_id, r.name LIMIT $7

-- name: released_versions
-- Replaced record versions a hold kept (retired, sealed value still there) that no hold
-- in force covers any more, after ($2, $3, $4) in key order. Replacing shreds the old
-- version unless a hold covers it (DESIGN.md), whatever the category's
-- keep_at_least_days (that binds erasures, not rectification), so once the last hold
-- is gone they go too.
SELECT r.subject_id, r.name, r.version, r.data_key_id FROM records r
  JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
 WHERE r.tenant_id = $1 AND NOT r.current AND r.value_sealed IS NOT NULL
   AND ($2::uuid IS NULL OR (r.subject_id, r.name, r.version) > ($2, $3::text, $4::int))
   AND NOT dv_held_now(r.tenant_id, s.ref_hash, r.category)
   AND s.restricted_at IS NULL
   AND NOT (r.generation = ANY (dv_erased_generations(r.tenant_id, r.subject_id)))
 ORDER BY r.subject_id, r.name, r.version LIMIT $5

-- name: shred_released_version
-- Its data key destroyed in the same transaction: the sealed value goes too.
UPDATE records SET value_sealed = NULL
 WHERE tenant_id = $1 AND subject_id = $2 AND name = $3 AND version = $4 AND NOT current

-- name: kept_versions
-- Versions of a record that a hold kept when it was replaced (retired, value still
-- sealed), newest first, with the holds in force that cover them now (none once the last
-- was released; retention then shreds them within minutes).
SELECT r.version, r.created_at, r.superseded_at,
       ARRAY(SELECT h.id FROM holds h
              WHERE h.tenant_id = r.tenant_id AND dv_hold_in_force(h, now())
                AND dv_hold_covers(h, s.ref_hash, r.category)
              ORDER BY h.id) AS hold_ids
  FROM records r JOIN subjects s ON s.tenant_id = r.tenant_id AND s.id = r.subject_id
 WHERE r.tenant_id = $1 AND r.subject_id = $2 AND r.name = $3
   AND NOT r.current AND r.value_sealed IS NOT NULL
 ORDER BY r.version DESC

-- name: version
-- One version of a record with its key chain, named as keys.sql `data_key_by_id` names
-- them (KeyRing.open_data_key).
SELECT r.version, r.value_sealed,
       d.id, d.purpose, d.wrapped_key,
       sk.id AS subject_key_id, sk.subject_id, sk.category, sk.generation, sk.kek_version,
       sk.wrapped_key AS subject_wrapped, k.wrapped_key AS kek_wrapped
  FROM records r
  JOIN data_keys d ON d.tenant_id = r.tenant_id AND d.id = r.data_key_id
  JOIN subject_keys sk ON sk.tenant_id = d.tenant_id AND sk.id = d.subject_key_id
  JOIN tenant_keks k ON k.tenant_id = sk.tenant_id AND k.version = sk.kek_version
 WHERE r.tenant_id = $1 AND r.subject_id = $2 AND r.name = $3 AND r.version = $4

