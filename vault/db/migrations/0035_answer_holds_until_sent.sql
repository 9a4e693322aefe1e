-- A read answered in one message (a bounded range of at most 1 MiB, migration 0032) holds
-- its data key until its answer has been sent, not only until its access-log row commits
-- (sixth review: a client that stopped reading kept the decrypted range waiting in the
-- vault with no hold and no clock watching it, and received it after the erasure had
-- completed). The transfer's watchdog renews the hold and cuts a stalled send as for any
-- download; the transfer releases it when its answer is out or it is cut
-- (dv_transfer_release, migration 0026).
--
-- Its access-log row's commit still makes the hold durable before the answer's first
-- byte (the hold was committed without its own WAL flush): this function is
-- dv_access_log_chain_releasing (migration 0032) without the release. A hold on
-- $18[i]/$19[i] that is not there any more (a database crash lost it) is taken again for
-- $20 seconds while the key is live (dv_transfer_hold); with the key destroyed it raises
-- DV410, the batch is not committed and its requests are answered 503.
-- dv_access_log_chain_releasing stays for a replica not yet upgraded; nothing calls it
-- from this version on.
CREATE FUNCTION dv_access_log_chain_holding(
    p_tenant uuid,
    p_ats timestamptz[], p_request_ids text[], p_key_ids uuid[], p_key_prefixes text[],
    p_ips inet[], p_ip_hashes bytea[], p_methods text[], p_routes text[],
    p_statuses integer[], p_bytes_in bigint[], p_bytes_out bigint[],
    p_subject_ref_hashes bytea[], p_artefact_ids uuid[],
    p_used_key_ids uuid[], p_used_ats timestamptz[], p_used_ips inet[],
    p_transfers uuid[], p_data_keys uuid[], p_seconds double precision)
RETURNS TABLE (seq bigint, row_hash bytea)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    FOR i IN 1 .. coalesce(cardinality(p_transfers), 0) LOOP
        PERFORM 1 FROM transfer_keys
          WHERE tenant_id = p_tenant AND transfer_id = p_transfers[i]
            AND data_key_id = p_data_keys[i];
        IF NOT FOUND
           AND NOT dv_transfer_hold(p_tenant, p_transfers[i], p_data_keys[i], p_seconds) THEN
            RAISE EXCEPTION 'a read''s hold on its data key was lost and the key destroyed'
                USING ERRCODE = 'DV410';
        END IF;
    END LOOP;
    RETURN QUERY
    SELECT c.seq, c.row_hash
      FROM dv_access_log_chain(p_tenant, p_ats, p_request_ids, p_key_ids, p_key_prefixes,
                               p_ips, p_ip_hashes, p_methods, p_routes, p_statuses,
                               p_bytes_in, p_bytes_out, p_subject_ref_hashes,
                               p_artefact_ids, p_used_key_ids, p_used_ats, p_used_ips) c;
END
$$;

-- Transfers that ended release their holds in batches, off the request path
-- (vault/services/transfer_releases.py): dv_transfer_release (migration 0026) for many,
-- committed without waiting for the WAL flush as it is (a release lost in a crash
-- leaves rows that expire by the clock).
CREATE FUNCTION dv_transfer_release_many(p_tenant uuid, p_transfers uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true),
            set_config('synchronous_commit', 'off', true);
    DELETE FROM transfer_keys WHERE tenant_id = p_tenant AND transfer_id = ANY(p_transfers);
END
$$;

REVOKE ALL ON FUNCTION dv_transfer_release_many(uuid, uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_transfer_release_many(uuid, uuid[]) TO datavault_app;

REVOKE ALL ON FUNCTION dv_access_log_chain_holding(
    uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[], text[], integer[],
    bigint[], bigint[], bytea[], uuid[], uuid[], timestamptz[], inet[], uuid[], uuid[],
    double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_access_log_chain_holding(
    uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[], text[], integer[],
    bigint[], bigint[], bytea[], uuid[], uuid[], timestamptz[], inet[], uuid[], uuid[],
    double precision) TO datavault_app;
