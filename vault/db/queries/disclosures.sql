-- Disclosures (migration 0020): appended under the head's row lock, read newest disclosed
-- first, walked in seq order by `datavault audit verify`.

-- name: ensure_head
INSERT INTO disclosure_heads (tenant_id, seq, row_hash) VALUES ($1, 0, $2)
ON CONFLICT (tenant_id) DO NOTHING

-- name: lock_head
SELECT seq, row_hash FROM disclosure_heads WHERE tenant_id = $1 FOR UPDATE

-- name: move_head
UPDATE disclosure_heads SET seq = $2, row_hash = $3, updated_at = now() WHERE tenant_id = $1

-- name: get_head
SELECT seq, row_hash FROM disclosure_heads WHERE tenant_id = $1

-- name: row_hash_at
SELECT row_hash FROM disclosures WHERE tenant_id = $1 AND seq = $2

-- name: insert
INSERT INTO disclosures (tenant_id, seq, id, recorded_at, recorded_by, request_id,
                         subject_ref_hash, subject_id, hold_id, recipient, legal_basis,
                         reference, categories, description_sealed, description_key_id,
                         disclosed_at, withhold_from_subject_until, prev_hash, row_hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)

-- name: chain_page
SELECT * FROM disclosures WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3

-- name: list
-- With the subject's current sealed reference copy (found by the reference hash: the
-- subject may have been written first after the disclosure was recorded), so a listing
-- can name the subject while the vault can still decrypt its reference.
-- Filters: $2 subject, $3 hold, $4 since (inclusive) and $5 until (exclusive) on
-- disclosed_at, $6/$7 the cursor (disclosed_at, id) of the last row of the page before.
SELECT d.*, s.id AS ref_subject_id, s.ref_sealed, s.ref_data_key_id
  FROM disclosures d
  LEFT JOIN subjects s ON s.tenant_id = d.tenant_id AND s.ref_hash = d.subject_ref_hash
 WHERE d.tenant_id = $1
   AND ($2::bytea IS NULL OR d.subject_ref_hash = $2)
   AND ($3::uuid IS NULL OR d.hold_id = $3)
   AND ($4::timestamptz IS NULL OR d.disclosed_at >= $4)
   AND ($5::timestamptz IS NULL OR d.disclosed_at < $5)
   AND ($6::timestamptz IS NULL OR (d.disclosed_at, d.id) < ($6, $7::uuid))
 ORDER BY d.disclosed_at DESC, d.id DESC
 LIMIT $8

-- name: get
SELECT d.*, s.id AS ref_subject_id, s.ref_sealed, s.ref_data_key_id
  FROM disclosures d
  LEFT JOIN subjects s ON s.tenant_id = d.tenant_id AND s.ref_hash = d.subject_ref_hash
 WHERE d.tenant_id = $1 AND d.id = $2
