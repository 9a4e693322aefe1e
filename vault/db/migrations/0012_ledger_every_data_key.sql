-- Every destroyed data key goes into the shred ledger (DESIGN.md: "every destroyed key id
-- is recorded outside PostgreSQL"), not only the subject keys an erasure destroys: an
-- artefact or record deleted, a record replaced, or data whose retention ran out must not
-- come back readable from a restored backup either. dv_destroy_data_key is the one way a
-- single data key is destroyed: it nulls the wrapped bytes and writes the outbox row in
-- the caller's transaction (row-level security applies: SECURITY INVOKER, the caller has
-- set its tenant). It returns destroyed_at, or NULL when the key was destroyed already.
CREATE FUNCTION dv_destroy_data_key(p_tenant uuid, p_data_key uuid) RETURNS timestamptz
LANGUAGE sql VOLATILE
AS $$
    WITH destroyed AS (
        UPDATE data_keys SET wrapped_key = NULL, destroyed_at = now()
         WHERE tenant_id = p_tenant AND id = p_data_key AND wrapped_key IS NOT NULL
        RETURNING tenant_id, id, destroyed_at
    )
    INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, destroyed_at)
    SELECT tenant_id, 'data', id::text, destroyed_at FROM destroyed
    RETURNING destroyed_at
$$;

REVOKE ALL ON FUNCTION dv_destroy_data_key(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_destroy_data_key(uuid, uuid) TO datavault_app;

-- dv_record_write (0011) as it was, except that replacing a version destroys the old data
-- key through dv_destroy_data_key, so the replaced version is in the ledger too.
CREATE OR REPLACE FUNCTION dv_record_write(p_tenant uuid, p_key uuid, p_subject uuid, p_name text,
                                p_category text, p_generation integer, p_old_version integer,
                                p_old_data_key uuid, p_data_key uuid, p_subject_key uuid,
                                p_wrapped_data_key bytea, p_sealed bytea, p_size integer)
RETURNS TABLE (version integer, created_at timestamptz, kept_by uuid[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_held uuid[] := '{}';
    v_version integer;
    v_data_key uuid;
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    IF p_key IS NOT NULL THEN
        PERFORM dv_require_live_key(p_tenant, p_key);
    END IF;
    -- The erasure that shreds the reference copy clears ref_sealed in the same
    -- transaction, so the locked row's own columns (re-checked after a lock wait) say
    -- whether the copy is still readable.
    PERFORM 1 FROM subjects s
     WHERE s.tenant_id = p_tenant AND s.id = p_subject AND s.generation = p_generation
       AND s.restricted_at IS NULL AND s.ref_sealed IS NOT NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT r.version, r.data_key_id INTO v_version, v_data_key FROM records r
     WHERE r.tenant_id = p_tenant AND r.subject_id = p_subject AND r.name = p_name
       AND r.current
       FOR UPDATE;
    IF v_version IS DISTINCT FROM p_old_version OR v_data_key IS DISTINCT FROM p_old_data_key
       OR NOT EXISTS(SELECT 1 FROM subject_keys sk
                      WHERE sk.tenant_id = p_tenant AND sk.id = p_subject_key
                        AND sk.subject_id = p_subject AND sk.category = p_category
                        AND sk.generation = p_generation AND sk.wrapped_key IS NOT NULL)
    THEN
        RETURN;
    END IF;
    INSERT INTO data_keys (tenant_id, id, subject_key_id, purpose, wrapped_key)
    VALUES (p_tenant, p_data_key, p_subject_key, 'record', p_wrapped_data_key);
    IF p_old_version IS NOT NULL THEN
        v_held := ARRAY(SELECT h.id FROM dv_holds_covering(p_tenant, p_subject,
                                                           ARRAY[p_category]) h);
        IF cardinality(v_held) = 0 THEN
            PERFORM dv_destroy_data_key(p_tenant, p_old_data_key);
        END IF;
        PERFORM dv_retire_record(p_tenant, p_subject, p_name, p_old_version,
                                 cardinality(v_held) = 0);
    END IF;
    -- The current version is the newest; without one (deleted, or never written) the
    -- numbers go on after the newest there was.
    RETURN QUERY
    INSERT INTO records (tenant_id, subject_id, name, version, category, generation,
                         data_key_id, value_sealed, size, current)
    VALUES (p_tenant, p_subject, p_name,
            coalesce(v_version, (SELECT max(r.version) FROM records r
                                  WHERE r.tenant_id = p_tenant AND r.subject_id = p_subject
                                    AND r.name = p_name), 0) + 1,
            p_category, p_generation, p_data_key, p_sealed, p_size, true)
    RETURNING records.version, records.created_at, v_held;
END
$$;

