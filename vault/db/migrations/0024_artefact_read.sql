-- Reading an artefact (its metadata, its content, a range of it, HEAD) in one statement
-- (issue 19: a 64 KiB range read took two transactions of six round trips each before a
-- byte was decrypted). Like dv_record_read (migration 0011): it sets role and tenant for
-- its own transaction, checks the request's API key where the vault recognised it from
-- memory (p_key; NULL: checked already), and returns the subject, the artefact and its
-- data key's whole chain in one snapshot. No row: no such subject; a row whose
-- artefact_id is NULL: no such artefact. The vault applies the access rules to the row
-- (vault/services/subjects.py check_access, check_generation), as it does for records.
CREATE FUNCTION dv_artefact_read(p_tenant uuid, p_key uuid, p_ref_hash bytea, p_artefact uuid)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               erased_generations integer[], artefact_id uuid, artefact_category text,
               artefact_generation integer,
               data_key_id uuid, blob_key text, state text, content_type text, size bigint,
               segment_size integer, metadata_sealed bytea, created_at timestamptz,
               expires_at timestamptz, id uuid, purpose text, wrapped_key bytea,
               subject_key_id uuid, category text, generation integer, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea)
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
    SELECT s.id, s.ref_hash, s.generation, s.created_at, s.restricted_at, s.erased_generations,
           a.id, a.category, a.generation, a.data_key_id, a.blob_key, a.state, a.content_type, a.size,
           a.segment_size, a.metadata_sealed, a.created_at, a.expires_at,
           d.id, d.purpose, d.wrapped_key,
           sk.id, sk.category, sk.generation, sk.kek_version, sk.wrapped_key, k.wrapped_key
      FROM dv_subject(p_tenant, p_ref_hash) s
      LEFT JOIN artefacts a ON a.tenant_id = p_tenant AND a.id = p_artefact
                           AND a.subject_id = s.id
      LEFT JOIN data_keys d ON d.tenant_id = p_tenant AND d.id = a.data_key_id
      LEFT JOIN subject_keys sk ON sk.tenant_id = p_tenant AND sk.id = d.subject_key_id
      LEFT JOIN tenant_keks k ON k.tenant_id = p_tenant AND k.version = sk.kek_version;
END
$$;

REVOKE ALL ON FUNCTION dv_artefact_read(uuid, uuid, bytea, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_artefact_read(uuid, uuid, bytea, uuid) TO datavault_app;
