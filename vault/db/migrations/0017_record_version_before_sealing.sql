-- A record's value is bound to its record's name and version (crypto/FORMAT.md, record
-- v2 `B2`), so the vault must know the version before it seals the value. Until now
-- dv_record_write chose the number inside the write. Now:
--
-- 1. One rule for the next version of a record: one more than the newest there was (the
--    current version is the newest; after a delete the numbers go on), 1 for a new name.
-- 2. dv_record_write_state also returns that number, read with the rest of the state in
--    the same statement (no extra round trip).
-- 3. dv_record_write takes the version the value was sealed for and, under the subject's
--    row lock, writes nothing (returns no row, as for any other change since the state
--    was read) unless that is still the next version; it stores exactly that number.
--    All record inserts happen here, after that lock, so the number cannot move between
--    the check and the insert.
--
-- The previous dv_record_write (13 arguments, 0012) is left in place, unchanged, for the
-- processes of the previous release still running during a rolling update (they seal
-- `B1`, which binds no version anyway); the next release's migration drops it.

-- 1.
CREATE FUNCTION dv_record_next_version(p_tenant uuid, p_subject uuid, p_name text)
RETURNS integer
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    -- One backward probe of the primary key (tenant_id, subject_id, name, version).
    RETURN coalesce((SELECT max(r.version) FROM records r
                      WHERE r.tenant_id = p_tenant AND r.subject_id = p_subject
                        AND r.name = p_name), 0) + 1;
END
$$;

-- 2. As in 0011, with next_version added at the end.
DROP FUNCTION dv_record_write_state(uuid, uuid, bytea, text, text);
CREATE FUNCTION dv_record_write_state(p_tenant uuid, p_key uuid, p_ref_hash bytea,
                                      p_name text, p_category text)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               ref_copy_live boolean, current_version integer, current_category text,
               current_data_key_id uuid, subject_key_id uuid, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea, settings jsonb,
               next_version integer)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    IF p_key IS NOT NULL THEN
        PERFORM dv_require_live_key(p_tenant, p_key);
    END IF;
    RETURN QUERY
    SELECT s.id, s.ref_hash, s.generation, s.created_at, s.restricted_at, s.ref_copy_live,
           r.version, r.category, r.data_key_id,
           sk.id, sk.kek_version, sk.wrapped_key, k.wrapped_key,
           CASE WHEN r.version IS NULL
                THEN (SELECT t.settings FROM tenants t WHERE t.id = p_tenant) END,
           dv_record_next_version(p_tenant, s.id, p_name)
      FROM dv_subject(p_tenant, p_ref_hash) s
      LEFT JOIN records r ON r.tenant_id = p_tenant AND r.subject_id = s.id
                         AND r.name = p_name AND r.current
      LEFT JOIN subject_keys sk ON sk.tenant_id = p_tenant AND sk.subject_id = s.id
                               AND sk.category = coalesce(r.category, p_category)
                               AND sk.generation = s.generation
      LEFT JOIN tenant_keks k ON k.tenant_id = p_tenant AND k.version = sk.kek_version;
END
$$;

-- 3. As in 0012, with p_version: the version p_sealed was sealed for.
CREATE FUNCTION dv_record_write(p_tenant uuid, p_key uuid, p_subject uuid, p_name text,
                                p_category text, p_generation integer, p_old_version integer,
                                p_old_data_key uuid, p_version integer, p_data_key uuid,
                                p_subject_key uuid, p_wrapped_data_key bytea, p_sealed bytea,
                                p_size integer)
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
    -- A value sealed for another version than the one this write would store is never
    -- stored: its object identity would name another record version.
    IF v_version IS DISTINCT FROM p_old_version OR v_data_key IS DISTINCT FROM p_old_data_key
       OR p_version IS DISTINCT FROM dv_record_next_version(p_tenant, p_subject, p_name)
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
    RETURN QUERY
    INSERT INTO records (tenant_id, subject_id, name, version, category, generation,
                         data_key_id, value_sealed, size, current)
    VALUES (p_tenant, p_subject, p_name, p_version, p_category, p_generation, p_data_key,
            p_sealed, p_size, true)
    RETURNING records.version, records.created_at, v_held;
END
$$;

REVOKE ALL ON FUNCTION
    dv_record_next_version(uuid, uuid, text),
    dv_record_write_state(uuid, uuid, bytea, text, text),
    dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid, integer, uuid, uuid,
                    bytea, bytea, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dv_record_next_version(uuid, uuid, text),
    dv_record_write_state(uuid, uuid, bytea, text, text),
    dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid, integer, uuid, uuid,
                    bytea, bytea, integer)
    TO datavault_app;
