-- Whether a hold in force covers a tenant's data of one category for one subject (by
-- reference hash): not released, not past expires_at, tenant-wide or that subject's, all
-- categories or that one. The same rule dv_holds_covering (0011) applies under the holds
-- lock; this one is for the jobs' queries that page past held items (retention), so the
-- rule is written once for all of them. STABLE, SECURITY INVOKER: row-level security
-- applies as to the caller.
CREATE FUNCTION dv_held_now(p_tenant uuid, p_ref_hash bytea, p_category text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM holds h
         WHERE h.tenant_id = p_tenant AND h.released_at IS NULL
           AND (h.expires_at IS NULL OR h.expires_at > now())
           AND (h.subject_ref_hash IS NULL OR h.subject_ref_hash = p_ref_hash)
           AND (h.categories IS NULL OR p_category = ANY (h.categories)))
$$;

REVOKE ALL ON FUNCTION dv_held_now(uuid, bytea, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_held_now(uuid, bytea, text) TO datavault_app;
