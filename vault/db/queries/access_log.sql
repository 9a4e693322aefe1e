-- name: get_head
SELECT seq, row_hash FROM access_log_heads WHERE tenant_id = $1

-- name: row_hash_at
SELECT row_hash FROM access_log WHERE tenant_id = $1 AND seq = $2

-- name: append
-- The rows chained onto the tenant's head under its row lock, the new head and the keys'
-- last use, in one statement (migration 0015). Returns the new head.
SELECT * FROM dv_access_log_chain($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
                                  $14, $15, $16, $17)

-- name: append_holding
-- `append`, and the holds $18/$19 (pairwise: transfer, data key) of reads answered in one
-- message whose answers wait for this commit: confirmed there (taken again for $20
-- seconds if a database crash lost one while the key is live; DV410 if it is destroyed),
-- not released: they last until the answers are sent (migration 0035).
SELECT * FROM dv_access_log_chain_holding($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                                          $12, $13, $14, $15, $16, $17, $18, $19, $20)

-- name: chain_page
SELECT tenant_id, seq, at, request_id, api_key_id, key_prefix, ip_hash, method, route, status,
       bytes_in, bytes_out, subject_ref_hash, artefact_id, prev_hash, row_hash
  FROM access_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3

-- name: search
-- $10: the mapped spelling of an IPv4 $3 (rows logged before addresses were canonical).
SELECT seq, at, api_key_id, key_prefix, host(ip) AS ip, masklen(ip) AS ip_masklen, method,
       route, status, bytes_in, bytes_out, subject_ref_hash, artefact_id, request_id
  FROM access_log
 WHERE tenant_id = $1
   AND ($2::uuid IS NULL OR api_key_id = $2)
   AND ($3::inet IS NULL OR ip && $3::inet OR ip && $10::inet)
   AND ($4::int IS NULL OR status = $4)
   AND ($5::timestamptz IS NULL OR at >= $5)
   AND ($6::timestamptz IS NULL OR at < $6)
   AND ($7::bigint IS NULL OR seq < $7)
   AND ($8::bytea IS NULL OR subject_ref_hash = $8)
 ORDER BY seq DESC
 LIMIT $9

-- name: age_ips
-- IP retention across every chain, through the one function allowed to change ip.
SELECT truncated, dropped FROM dv_age_access_log_ips($1, $2, $3)
