-- A download or range read holds its data key from the statement that finds the artefact,
-- and a read answered in one message releases it in its access-log row's commit (issue 19,
-- fourth round: a 64 KiB seek was four round trips, the read, the hold, the access-log
-- commit and the release; now two). Both call the functions that carry the rules
-- (dv_artefact_read, migration 0024; dv_transfer_hold, migration 0026;
-- dv_access_log_chain, migration 0015): nothing of them is repeated here.

-- dv_artefact_read's row, and whether transfer $5 now holds its data key for $6 seconds
-- (dv_transfer_hold: only while the key and every key above it are live). The hold is
-- taken for an artefact that is there to read (not uploading or deleted); the vault still
-- applies the access rules to the row, and a read refused after the hold releases it with
-- its lease. `held` false with a live chain cannot happen in one snapshot; the vault then
-- claims the key with dv_transfer_hold on its own, as before.
CREATE FUNCTION dv_artefact_read_held(p_tenant uuid, p_key uuid, p_ref_hash bytea,
                                      p_artefact uuid, p_transfer uuid,
                                      p_seconds double precision)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               erased_generations integer[], artefact_id uuid, artefact_category text,
               artefact_generation integer,
               data_key_id uuid, blob_key text, state text, content_type text, size bigint,
               segment_size integer, metadata_sealed bytea, created_at timestamptz,
               expires_at timestamptz, id uuid, purpose text, wrapped_key bytea,
               subject_key_id uuid, category text, generation integer, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea, held boolean)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    RETURN QUERY
    SELECT r.*,
           CASE WHEN r.data_key_id IS NOT NULL AND r.state NOT IN ('uploading', 'deleted')
                THEN dv_transfer_hold(p_tenant, p_transfer, r.data_key_id, p_seconds)
                ELSE false END
      FROM dv_artefact_read(p_tenant, p_key, p_ref_hash, p_artefact) r;
END
$$;

-- The access-log rows of a batch (dv_access_log_chain, unchanged) and, in the same
-- transaction, the release of the transfers $18 that ended with them: reads answered in
-- one message, decrypted whole before their row was written, that hold no key any more.
-- Returns the new head and how many transfer_keys rows were released. Committed with the
-- access log's own durability (unlike dv_transfer_release, which need not wait for the
-- WAL flush: here the commit waits for it anyway).
CREATE FUNCTION dv_access_log_chain_releasing(
    p_tenant uuid,
    p_ats timestamptz[], p_request_ids text[], p_key_ids uuid[], p_key_prefixes text[],
    p_ips inet[], p_ip_hashes bytea[], p_methods text[], p_routes text[],
    p_statuses integer[], p_bytes_in bigint[], p_bytes_out bigint[],
    p_subject_ref_hashes bytea[], p_artefact_ids uuid[],
    p_used_key_ids uuid[], p_used_ats timestamptz[], p_used_ips inet[],
    p_transfers uuid[])
RETURNS TABLE (seq bigint, row_hash bytea, released integer)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_released integer;
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    DELETE FROM transfer_keys WHERE tenant_id = p_tenant AND transfer_id = ANY(p_transfers);
    GET DIAGNOSTICS v_released = ROW_COUNT;
    RETURN QUERY
    SELECT c.seq, c.row_hash, v_released
      FROM dv_access_log_chain(p_tenant, p_ats, p_request_ids, p_key_ids, p_key_prefixes,
                               p_ips, p_ip_hashes, p_methods, p_routes, p_statuses,
                               p_bytes_in, p_bytes_out, p_subject_ref_hashes,
                               p_artefact_ids, p_used_key_ids, p_used_ats, p_used_ips) c;
END
$$;

REVOKE ALL ON FUNCTION dv_artefact_read_held(uuid, uuid, bytea, uuid, uuid, double precision)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_artefact_read_held(uuid, uuid, bytea, uuid, uuid, double precision)
    TO datavault_app;
REVOKE ALL ON FUNCTION dv_access_log_chain_releasing(
    uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[], text[], integer[],
    bigint[], bigint[], bytea[], uuid[], uuid[], timestamptz[], inet[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_access_log_chain_releasing(
    uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[], text[], integer[],
    bigint[], bigint[], bytea[], uuid[], uuid[], timestamptz[], inet[], uuid[]) TO datavault_app;
