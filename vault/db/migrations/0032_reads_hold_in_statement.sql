-- A download or range read holds its data key from the statement that finds the artefact,
-- and a read answered in one message releases it in its access-log row's commit (issue 19,
-- fourth round: a 64 KiB seek was four round trips, the read, the hold, the access-log
-- commit and the release, and two WAL flushes; now two round trips and one flush). Both
-- call the functions that carry the rules (dv_artefact_read, migration 0024;
-- dv_transfer_hold, migration 0026; dv_access_log_chain, migration 0015): nothing of them
-- is repeated here.

-- dv_artefact_read's row, and whether transfer $5 now holds its data key for $6 seconds
-- (dv_transfer_hold: only while the key and every key above it are live). The hold is
-- taken for an artefact that is there to read (not uploading or deleted); the vault still
-- applies the access rules to the row, and a read refused after the hold releases it with
-- its lease. `held` false with a live chain cannot happen in one snapshot; the vault then
-- claims the key with dv_transfer_hold on its own, as before.
--
-- $7 false (a read whose answer is one message: a bounded range of at most 1 MiB) commits
-- without waiting for the WAL flush. The hold is visible to every other transaction at
-- once all the same (an erasure's completion sees it), and it is durable before the
-- answer's first byte: the answer waits for its access-log row's commit, whose flush
-- covers every earlier commit record. Only a database crash between the two can lose it;
-- then that commit (dv_access_log_chain_releasing, below) finds the hold gone and refuses
-- the batch if the key has been destroyed meanwhile, so the read is refused (503) rather
-- than answered after a shred it did not hold off. A streamed download ($7 true) sends
-- bytes before its row commits: its hold waits for the flush, as dv_transfer_hold's does.
CREATE FUNCTION dv_artefact_read_held(p_tenant uuid, p_key uuid, p_ref_hash bytea,
                                      p_artefact uuid, p_transfer uuid,
                                      p_seconds double precision, p_flush boolean)
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
    IF NOT p_flush THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    RETURN QUERY
    SELECT r.*,
           CASE WHEN r.data_key_id IS NOT NULL AND r.state NOT IN ('uploading', 'deleted')
                THEN dv_transfer_hold(p_tenant, p_transfer, r.data_key_id, p_seconds)
                ELSE false END
      FROM dv_artefact_read(p_tenant, p_key, p_ref_hash, p_artefact) r;
END
$$;

-- The access-log rows of a batch (dv_access_log_chain, unchanged) and, in the same
-- transaction, the release of the transfers that ended with them: reads answered in one
-- message, decrypted whole before their row was written, that hold no key any more.
-- $18[i] held data key $19[i] (a transfer holding two keys appears twice). Committed
-- with the access log's own durability. A transfer whose hold is not there any more (a
-- database crash lost a hold committed without its flush, $7 above) while its key has
-- been destroyed raised DV410: the batch is not committed and its requests are answered
-- 503, never with plaintext read across a shred that did not wait for it. (A hold gone
-- while the key is live is no race with an erasure: the read came before any shred.)
-- Returns the new head.
CREATE FUNCTION dv_access_log_chain_releasing(
    p_tenant uuid,
    p_ats timestamptz[], p_request_ids text[], p_key_ids uuid[], p_key_prefixes text[],
    p_ips inet[], p_ip_hashes bytea[], p_methods text[], p_routes text[],
    p_statuses integer[], p_bytes_in bigint[], p_bytes_out bigint[],
    p_subject_ref_hashes bytea[], p_artefact_ids uuid[],
    p_used_key_ids uuid[], p_used_ats timestamptz[], p_used_ips inet[],
    p_transfers uuid[], p_data_keys uuid[])
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
        -- Is the key live? dv_transfer_hold answers that (and holds it, expired at once:
        -- the DELETE below removes it in this transaction).
        IF NOT FOUND AND NOT dv_transfer_hold(p_tenant, p_transfers[i], p_data_keys[i], 0) THEN
            RAISE EXCEPTION 'a read''s hold on its data key was lost and the key destroyed'
                USING ERRCODE = 'DV410';
        END IF;
    END LOOP;
    DELETE FROM transfer_keys WHERE tenant_id = p_tenant AND transfer_id = ANY(p_transfers);
    RETURN QUERY
    SELECT c.seq, c.row_hash
      FROM dv_access_log_chain(p_tenant, p_ats, p_request_ids, p_key_ids, p_key_prefixes,
                               p_ips, p_ip_hashes, p_methods, p_routes, p_statuses,
                               p_bytes_in, p_bytes_out, p_subject_ref_hashes,
                               p_artefact_ids, p_used_key_ids, p_used_ats, p_used_ips) c;
END
$$;

REVOKE ALL ON FUNCTION dv_artefact_read_held(uuid, uuid, bytea, uuid, uuid, double precision, boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_artefact_read_held(uuid, uuid, bytea, uuid, uuid, double precision, boolean)
    TO datavault_app;
REVOKE ALL ON FUNCTION dv_access_log_chain_releasing(
    uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[], text[], integer[],
    bigint[], bigint[], bytea[], uuid[], uuid[], timestamptz[], inet[], uuid[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_access_log_chain_releasing(
    uuid, timestamptz[], text[], uuid[], text[], inet[], bytea[], text[], text[], integer[],
    bigint[], bigint[], bytea[], uuid[], uuid[], timestamptz[], inet[], uuid[], uuid[]) TO datavault_app;
