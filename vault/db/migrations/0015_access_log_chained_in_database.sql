-- The access-log chain is extended by the database, under the chain head's row lock, in
-- the one statement that appends a batch. Until now each process chained a batch onto
-- the head it had written last and the database took it only if that was still the
-- head; API replicas share each tenant's chain, so with two or more of them nearly every
-- batch lost that race and went through a locked transaction of five round trips
-- holding the head. Now a batch is one statement whoever wrote last.
--
-- A row's hash is vault/domain/access_chain.py `row_hash`, which `datavault audit
-- verify` recomputes for every row: SHA-256 over the domain, the previous row's hash and
-- each field length-prefixed (4-byte big-endian length; NULL is ffffffff); text and ids
-- as UTF-8 (ids in their canonical lowercase form), integers as 8-byte big-endian, the
-- time as microseconds since 1970 UTC.

CREATE FUNCTION dv_access_chain_field(p_value bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_value IS NULL THEN '\xffffffff'::bytea
                ELSE int4send(length(p_value)) || p_value END
$$;

CREATE FUNCTION dv_access_log_chain(
    p_tenant uuid,
    p_ats timestamptz[], p_request_ids text[], p_key_ids uuid[], p_key_prefixes text[],
    p_ips inet[], p_ip_hashes bytea[], p_methods text[], p_routes text[],
    p_statuses integer[], p_bytes_in bigint[], p_bytes_out bigint[],
    p_subject_ref_hashes bytea[], p_artefact_ids uuid[],
    p_used_key_ids uuid[], p_used_ats timestamptz[], p_used_ips inet[])
RETURNS TABLE (seq bigint, row_hash bytea)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_seq bigint;
    v_hash bytea;
    v_tenant bytea := dv_access_chain_field(convert_to(p_tenant::text, 'UTF8'));
    v_seqs bigint[] := '{}';
    v_prevs bytea[] := '{}';
    v_hashes bytea[] := '{}';
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    SELECT h.seq, h.row_hash INTO v_seq, v_hash FROM access_log_heads h
     WHERE h.tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND THEN
        -- The chain's first row: create its head (a concurrent creator's insert waits
        -- for ours and does nothing), then lock it.
        INSERT INTO access_log_heads (tenant_id, seq, row_hash)
        VALUES (p_tenant, 0, '\x0000000000000000000000000000000000000000000000000000000000000000')
        ON CONFLICT (tenant_id) DO NOTHING;
        SELECT h.seq, h.row_hash INTO v_seq, v_hash FROM access_log_heads h
         WHERE h.tenant_id = p_tenant FOR UPDATE;
    END IF;
    FOR i IN 1 .. coalesce(cardinality(p_ats), 0) LOOP
        v_seq := v_seq + 1;
        v_seqs := v_seqs || v_seq;
        v_prevs := v_prevs || v_hash;
        v_hash := sha256(
            convert_to('datavault.access-log.v1', 'UTF8') || v_hash || v_tenant
            || dv_access_chain_field(int8send(v_seq))
            || dv_access_chain_field(int8send((extract(epoch FROM p_ats[i]) * 1000000)::bigint))
            || dv_access_chain_field(convert_to(p_request_ids[i], 'UTF8'))
            || dv_access_chain_field(convert_to(p_key_ids[i]::text, 'UTF8'))
            || dv_access_chain_field(convert_to(p_key_prefixes[i], 'UTF8'))
            || dv_access_chain_field(p_ip_hashes[i])
            || dv_access_chain_field(convert_to(p_methods[i], 'UTF8'))
            || dv_access_chain_field(convert_to(p_routes[i], 'UTF8'))
            || dv_access_chain_field(int8send(p_statuses[i]::bigint))
            || dv_access_chain_field(int8send(p_bytes_in[i]))
            || dv_access_chain_field(int8send(p_bytes_out[i]))
            || dv_access_chain_field(p_subject_ref_hashes[i])
            || dv_access_chain_field(convert_to(p_artefact_ids[i]::text, 'UTF8')));
        v_hashes := v_hashes || v_hash;
    END LOOP;
    UPDATE api_keys k SET last_used_at = u.at, last_used_ip = u.ip
      FROM unnest(p_used_key_ids, p_used_ats, p_used_ips) AS u(id, at, ip)
     WHERE k.tenant_id = p_tenant AND k.id = u.id
       AND (k.last_used_at IS NULL OR k.last_used_at < u.at);
    INSERT INTO access_log (tenant_id, seq, at, request_id, api_key_id, key_prefix, ip,
                            ip_hash, method, route, status, bytes_in, bytes_out,
                            subject_ref_hash, artefact_id, prev_hash, row_hash)
    SELECT p_tenant, * FROM unnest(v_seqs, p_ats, p_request_ids, p_key_ids, p_key_prefixes,
                                   p_ips, p_ip_hashes, p_methods, p_routes, p_statuses,
                                   p_bytes_in, p_bytes_out, p_subject_ref_hashes,
                                   p_artefact_ids, v_prevs, v_hashes);
    UPDATE access_log_heads SET seq = v_seq, row_hash = v_hash, updated_at = now()
     WHERE tenant_id = p_tenant;
    RETURN QUERY SELECT v_seq, v_hash;
END
$$;

-- dv_access_log_append (0011) stays for replicas of the previous release still running
-- during a rolling upgrade: both take the same row lock and keep one chain.

REVOKE ALL ON FUNCTION
    dv_access_chain_field(bytea),
    dv_access_log_chain(uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[],
                        text[], integer[], bigint[], bigint[], bytea[], uuid[], uuid[],
                        timestamptz[], inet[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dv_access_chain_field(bytea),
    dv_access_log_chain(uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[],
                        text[], integer[], bigint[], bigint[], bytea[], uuid[], uuid[],
                        timestamptz[], inet[])
    TO datavault_app;
