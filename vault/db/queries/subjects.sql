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
       ARRAY(SELECT DISTINCT e.generation FROM erasures e
              WHERE e.tenant_id = s.tenant_id AND e.subject_id = s.id
                AND e.status <> 'cancelled' AND e.generation IS NOT NULL) AS erased_generations,
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
UPDATE subjects SET restricted_at = coalesce(restricted_at, now()), restriction_reason_sealed = $3
 WHERE tenant_id = $1 AND id = $2
RETURNING restricted_at

-- name: lift_restriction
UPDATE subjects SET restricted_at = NULL, restriction_reason_sealed = NULL
 WHERE tenant_id = $1 AND id = $2

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
