-- A record read is a transfer (sixth review): its value, decrypted and answered in one
-- message after its access-log row commits, waited in the process for a client that
-- stopped reading with no hold on its data key, and went out after the subject's erasure
-- completed. Like an artefact's seek (migration 0032), the statement that finds the
-- record records its data key as held by transfer $5 for $6 seconds (dv_transfer_hold:
-- only while the key and every key above it are live), committed without its own WAL
-- flush: the answer waits for its access-log row's commit, which flushes it and confirms
-- it (dv_access_log_chain_holding, migration 0035). The transfer's watchdog renews the
-- hold and cuts a stalled send; it is released once the answer has left the process.
-- dv_record_read carries the rules; nothing of it is repeated here.
CREATE FUNCTION dv_record_read_held(p_tenant uuid, p_key uuid, p_ref_hash bytea, p_name text,
                                    p_transfer uuid, p_seconds double precision)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               erased_generations integer[], version integer, record_generation integer,
               value_sealed bytea, id uuid, purpose text, wrapped_key bytea,
               subject_key_id uuid, category text, generation integer, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea, ever_existed boolean,
               held boolean)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    RETURN QUERY
    SELECT r.*,
           CASE WHEN r.id IS NOT NULL AND r.value_sealed IS NOT NULL
                THEN dv_transfer_hold(p_tenant, p_transfer, r.id, p_seconds)
                ELSE false END
      FROM dv_record_read(p_tenant, p_key, p_ref_hash, p_name) r;
END
$$;

REVOKE ALL ON FUNCTION dv_record_read_held(uuid, uuid, bytea, text, uuid, double precision)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_record_read_held(uuid, uuid, bytea, text, uuid, double precision)
    TO datavault_app;
