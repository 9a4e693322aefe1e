-- name: find
-- With the generations under an erasure instruction, which only compliance may read, and
-- whether the sealed copy of the reference is still readable: the read and write paths
-- need them, and one statement is one round trip (migration 0011).
-- Subject columns are named as the request functions name them (subject_from_columns).
SELECT id AS subject_id, ref_hash, generation AS subject_generation,
       created_at AS subject_created_at, restricted_at, ref_data_key_id, erased_generations,
       ref_copy_live
  FROM dv_subject($1, $2)

-- name: find_for_update
-- Writers of a subject's records hold its row lock (as holds and shredding do), so two
-- writes of one record queue instead of both making a current version. After waiting for
-- the lock, PostgreSQL re-reads the subject row but not the subqueries: so liveness of
-- the reference copy also asks the row's own ref_sealed (an erasure clears it in the
-- transaction that shreds the key), and erased_generations is for read paths only.
SELECT s.id AS subject_id, s.ref_hash, s.generation AS subject_generation,
       s.created_at AS subject_created_at, s.restricted_at, s.ref_data_key_id,
       dv_erased_generations(s.tenant_id, s.id) AS erased_generations,
       s.ref_sealed IS NOT NULL AND EXISTS(SELECT 1 FROM data_keys d
               WHERE d.tenant_id = s.tenant_id AND d.id = s.ref_data_key_id
                 AND d.wrapped_key IS NOT NULL) AS ref_copy_live
  FROM subjects s WHERE s.tenant_id = $1 AND s.ref_hash = $2
   FOR UPDATE OF s

-- name: insert
INSERT INTO subjects (tenant_id, id, ref_hash) VALUES ($1, $2, $3)
ON CONFLICT (tenant_id, ref_hash) DO NOTHING

-- name: set_ref_copy
UPDATE subjects SET ref_sealed = $3, ref_data_key_id = $4 WHERE tenant_id = $1 AND id = $2

-- name: ref_key_of
SELECT ref_data_key_id FROM subjects WHERE tenant_id = $1 AND id = $2

-- name: restrict
-- restriction_changes: this change's place in the order of the subject's restriction
-- changes, counted under its row lock (migration 0036).
UPDATE subjects SET restricted_at = coalesce(restricted_at, now()), restriction_reason_sealed = $3,
       restriction_changes = restriction_changes + 1
 WHERE tenant_id = $1 AND id = $2
RETURNING restricted_at, restriction_changes

-- name: drop_playback_links
-- Restriction ends every playback link to the subject's artefacts for good: lifting it
-- later does not bring them back (a use also refuses a restricted subject's data).
DELETE FROM playback_links l USING artefacts a
 WHERE l.tenant_id = $1 AND a.tenant_id = l.tenant_id AND a.id = l.artefact_id
   AND a.subject_id = $2

-- name: lift_restriction
UPDATE subjects SET restricted_at = NULL, restriction_reason_sealed = NULL,
       restriction_changes = restriction_changes + 1
 WHERE tenant_id = $1 AND id = $2
RETURNING restriction_changes

-- name: summary
SELECT category, sum(artefacts)::bigint AS artefacts, sum(records)::bigint AS records,
       sum(bytes)::bigint AS bytes
  FROM (SELECT category, count(*) AS artefacts, 0 AS records, coalesce(sum(size), 0) AS bytes
          FROM artefacts WHERE tenant_id = $1 AND subject_id = $2 AND state = 'active'
         GROUP BY category
        UNION ALL
        SELECT category, 0, count(*), coalesce(sum(size), 0)
          FROM records WHERE tenant_id = $1 AND subject_id = $2 AND current AND value_sealed IS NOT NULL
         GROUP BY category) AS per_kind
 GROUP BY category ORDER BY category

-- name: erased
-- API.md status `erased`: an erasure of the subject has run (completed, or held with
-- only kept categories left) and no generation outside those erasures cover (their
-- from_generation .. generation, migration 0016) has a live key. Data written after the
-- request is a new life under a new generation's keys, so such a write makes the subject
-- active again. The kept keys of a held erasure belong to the generations it covers.
WITH done AS (
    SELECT g AS generation
      FROM erasures e, generate_series(e.from_generation, e.generation) AS g
     WHERE e.tenant_id = $1 AND e.subject_id = $2 AND e.status IN ('completed', 'held')
       AND e.generation IS NOT NULL)
SELECT EXISTS (SELECT 1 FROM done)
   AND NOT EXISTS (SELECT 1 FROM subject_keys k
                    WHERE k.tenant_id = $1 AND k.subject_id = $2 AND k.wrapped_key IS NOT NULL
                      AND k.generation NOT IN (SELECT generation FROM done))

-- name: export_records
-- The export's manifest: which record versions it holds, read in the snapshot that
-- found the subject. Values are fetched later, a few at a time (export_record_values).
SELECT name, version, category, generation, created_at FROM records
 WHERE tenant_id = $1 AND subject_id = $2 AND current AND value_sealed IS NOT NULL
   AND NOT (generation = ANY($3::int[]))
 ORDER BY name

-- name: export_record_values
-- Exactly the versions the manifest named ($3 names, $4 versions), while still readable:
-- a version replaced and shredded, deleted or erased since then is missing from the result.
SELECT r.name, r.version, r.generation, r.data_key_id, r.value_sealed
  FROM records r
  JOIN unnest($3::text[], $4::int[]) AS wanted (name, version)
    ON r.name = wanted.name AND r.version = wanted.version
 WHERE r.tenant_id = $1 AND r.subject_id = $2 AND r.value_sealed IS NOT NULL

-- name: export_holds
-- Holds that cover or covered the subject: its own (by reference hash), and tenant-wide
-- ones in force at some time since the subject was created ($3). Only what a data
-- subject is told: not reason, reference, note or who placed or released them.
SELECT id, categories, placed_at, expires_at, released_at,
       CASE WHEN released_at IS NOT NULL THEN 'released'
            WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
            ELSE 'active' END AS status
  FROM holds
 WHERE tenant_id = $1
   AND (subject_ref_hash = $2
        OR (subject_ref_hash IS NULL
            AND coalesce(least(released_at, expires_at), 'infinity') > $3))
 ORDER BY placed_at DESC, id DESC

-- name: export_erasures
-- The subject's erasure instructions, found by reference hash as GET /v1/erasures finds
-- them (an instruction for a reference not yet known has no subject id).
SELECT id, status, requested_at, not_before, due_at, completed_at FROM erasures
 WHERE tenant_id = $1 AND subject_ref_hash = $2
 ORDER BY requested_at DESC, id DESC
