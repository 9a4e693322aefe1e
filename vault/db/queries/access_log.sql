-- name: ensure_head
INSERT INTO access_log_heads (tenant_id, seq, row_hash) VALUES ($1, 0, $2)
ON CONFLICT (tenant_id) DO NOTHING

-- name: lock_head
SELECT seq, row_hash FROM access_log_heads WHERE tenant_id = $1 FOR UPDATE

-- name: get_head
SELECT seq, row_hash FROM access_log_heads WHERE tenant_id = $1

-- name: row_hash_at
SELECT row_hash FROM access_log WHERE tenant_id = $1 AND seq = $2

-- name: append_rows
-- The rows, the new chain head and the keys' last use ($20-$22: key ids, times, IPs) in
-- one statement (every data-modifying WITH runs, whether or not the outer one reads it).
WITH touched AS (
    UPDATE api_keys k SET last_used_at = u.at, last_used_ip = u.ip
      FROM unnest($20::uuid[], $21::timestamptz[], $22::inet[]) AS u(id, at, ip)
     WHERE k.tenant_id = $1 AND k.id = u.id
       AND (k.last_used_at IS NULL OR k.last_used_at < u.at)
    RETURNING 1
), appended AS (
    INSERT INTO access_log (tenant_id, seq, at, request_id, api_key_id, key_prefix, ip,
                            ip_hash, method, route, status, bytes_in, bytes_out,
                            subject_ref_hash, artefact_id, prev_hash, row_hash)
    SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::uuid[],
                             $6::text[], $7::inet[], $8::bytea[], $9::text[], $10::text[],
                             $11::int[], $12::bigint[], $13::bigint[], $14::bytea[],
                             $15::uuid[], $16::bytea[], $17::bytea[])
    RETURNING 1
)
UPDATE access_log_heads SET seq = $18, row_hash = $19, updated_at = now()
 WHERE tenant_id = $1

-- name: chain_page
SELECT tenant_id, seq, at, request_id, api_key_id, key_prefix, ip_hash, method, route, status,
       bytes_in, bytes_out, subject_ref_hash, artefact_id, prev_hash, row_hash
  FROM access_log WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3

-- name: search
SELECT seq, at, api_key_id, key_prefix, host(ip) AS ip, masklen(ip) AS ip_masklen, method,
       route, status, bytes_in, bytes_out, subject_ref_hash, artefact_id, request_id
  FROM access_log
 WHERE tenant_id = $1
   AND ($2::uuid IS NULL OR api_key_id = $2)
   AND ($3::inet IS NULL OR ip && $3::inet)
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
