-- Request functions: one statement for what a hot request path otherwise sends as five to
-- twelve (BEGIN, role and tenant, its reads and writes, COMMIT). On a small record every
-- round trip costs more than the work it carries, in the vault's event loop and here.
--
-- Each function first sets role and tenant for its own transaction, exactly as
-- Database.tenant_tx does (set_config(..., true): gone at commit), and runs as its caller
-- (SECURITY INVOKER), so row-level security applies to every statement inside it. The
-- vault passes the authenticated key's tenant as the first argument, as it passes it to
-- tenant_tx. A statement that forgets to set a tenant sees no tenant's rows at all.
--
-- plpgsql runs each statement in its own snapshot; where a read must see one snapshot
-- (a record with its key chain), it is one statement, as it was in queries/*.sql.

-- The request's API key, when the vault recognised it from memory (its unchanging parts:
-- hash, tenant, scopes, allowed CIDRs, expiry) and left its liveness to the statement
-- that reads or writes: not revoked, its tenant not closed. Else SQLSTATE DV401, which
-- the vault answers with 401. In the same statement as the data, a revocation committed
-- before the request's statement is never outrun.
CREATE FUNCTION dv_require_live_key(p_tenant uuid, p_key uuid) RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF NOT EXISTS(SELECT 1 FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
                   WHERE k.tenant_id = p_tenant AND k.id = p_key AND k.revoked_at IS NULL
                     AND t.status <> 'closed') THEN
        RAISE EXCEPTION 'the API key is not live' USING ERRCODE = 'DV401';
    END IF;
END
$$;

-- A subject as the read paths see it: with the generations under an erasure instruction
-- (compliance reads only) and whether the sealed copy of its reference is still readable.
-- subjects.sql `find` is this function; the request functions join it.
CREATE FUNCTION dv_subject(p_tenant uuid, p_ref_hash bytea)
RETURNS TABLE (id uuid, ref_hash bytea, generation integer, created_at timestamptz,
               restricted_at timestamptz, ref_data_key_id uuid, erased_generations integer[],
               ref_copy_live boolean)
LANGUAGE sql STABLE
AS $$
    SELECT s.id, s.ref_hash, s.generation, s.created_at, s.restricted_at, s.ref_data_key_id,
           ARRAY(SELECT DISTINCT e.generation FROM erasures e
                  WHERE e.tenant_id = s.tenant_id AND e.subject_id = s.id
                    AND e.status <> 'cancelled' AND e.generation IS NOT NULL),
           s.ref_sealed IS NOT NULL AND EXISTS(SELECT 1 FROM data_keys d
                   WHERE d.tenant_id = s.tenant_id AND d.id = s.ref_data_key_id
                     AND d.wrapped_key IS NOT NULL)
      FROM subjects s WHERE s.tenant_id = p_tenant AND s.ref_hash = p_ref_hash
$$;

-- Placing a tenant-wide hold and every check before a destroy are ordered by one
-- transaction-scoped advisory lock per tenant: exclusive to place, shared to check. (A
-- row lock on the tenant did this before; shared row locks taken by many writers at once
-- become MultiXacts, which cost every record write.) Subject holds are ordered by the
-- subject's row lock, which destroy paths hold too.
CREATE FUNCTION dv_holds_lock_key(p_tenant uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$
    SELECT hashtextextended('datavault.holds/' || p_tenant::text, 0)
$$;

-- Active holds over one subject and some categories, under the shared holds lock.
CREATE FUNCTION dv_holds_covering(p_tenant uuid, p_subject uuid, p_categories text[])
RETURNS TABLE (id uuid, categories text[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock_shared(dv_holds_lock_key(p_tenant));
    RETURN QUERY
    SELECT h.id, h.categories FROM holds h
      JOIN subjects s ON s.tenant_id = h.tenant_id AND s.id = p_subject
     WHERE h.tenant_id = p_tenant AND h.released_at IS NULL
       AND (h.expires_at IS NULL OR h.expires_at > now())
       AND (h.subject_ref_hash IS NULL OR h.subject_ref_hash = s.ref_hash)
       AND (h.categories IS NULL OR h.categories && p_categories);
END
$$;

-- Retire a record's current version; p_shredded: its key was destroyed, so the sealed
-- value goes too.
CREATE FUNCTION dv_retire_record(p_tenant uuid, p_subject uuid, p_name text, p_version integer,
                                 p_shredded boolean)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    UPDATE records SET current = false, superseded_at = now(),
           value_sealed = CASE WHEN p_shredded THEN NULL ELSE value_sealed END
     WHERE tenant_id = p_tenant AND subject_id = p_subject AND name = p_name
       AND version = p_version
$$;

-- GET record: the subject, its current version of the record and the version's whole
-- key chain in one snapshot (no row: no such subject; a row with no version: none).
CREATE FUNCTION dv_record_read(p_tenant uuid, p_key uuid, p_ref_hash bytea, p_name text)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               erased_generations integer[], version integer, record_generation integer,
               value_sealed bytea, id uuid, purpose text, wrapped_key bytea,
               subject_key_id uuid, category text, generation integer, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea, ever_existed boolean)
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
           r.version, r.generation, r.value_sealed,
           d.id, d.purpose, d.wrapped_key,
           sk.id, sk.category, sk.generation, sk.kek_version, sk.wrapped_key, k.wrapped_key,
           EXISTS(SELECT 1 FROM records e
                   WHERE e.tenant_id = p_tenant AND e.subject_id = s.id AND e.name = p_name)
      FROM dv_subject(p_tenant, p_ref_hash) s
      LEFT JOIN records r ON r.tenant_id = p_tenant AND r.subject_id = s.id
                         AND r.name = p_name AND r.current
      LEFT JOIN data_keys d ON d.tenant_id = p_tenant AND d.id = r.data_key_id
      LEFT JOIN subject_keys sk ON sk.tenant_id = p_tenant AND sk.id = d.subject_key_id
      LEFT JOIN tenant_keks k ON k.tenant_id = p_tenant AND k.version = sk.kek_version;
END
$$;

-- List records: the subject (one row with no record when it has none) and one page of
-- its current, readable records, newest first. p_all_generations: the compliance scope
-- also sees generations under an erasure instruction (what holds or retention kept).
CREATE FUNCTION dv_record_list(p_tenant uuid, p_key uuid, p_ref_hash bytea,
                               p_after_at timestamptz, p_after_name text, p_limit integer,
                               p_all_generations boolean)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               erased_generations integer[], name text, version integer, category text,
               created_at timestamptz)
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
           r.name, r.version, r.category, r.created_at
      FROM dv_subject(p_tenant, p_ref_hash) s
      LEFT JOIN LATERAL (
          SELECT x.name, x.version, x.category, x.created_at FROM records x
           WHERE x.tenant_id = p_tenant AND x.subject_id = s.id AND x.current
             AND x.value_sealed IS NOT NULL
             AND (p_after_at IS NULL OR (x.created_at, x.name) < (p_after_at, p_after_name))
             AND (p_all_generations OR NOT (x.generation = ANY(s.erased_generations)))
           ORDER BY x.created_at DESC, x.name DESC
           LIMIT p_limit) r ON true
     ORDER BY r.created_at DESC, r.name DESC;
END
$$;

-- PUT record, first statement: the subject (no row: it does not exist yet), the record's
-- current version, and the subject key for the record's category (the current version's,
-- else p_category) with its KEK; the tenant's settings when there is no current version,
-- for a new record's category check. It takes no lock: dv_record_write checks under the
-- locks that nothing it relies on changed in between.
CREATE FUNCTION dv_record_write_state(p_tenant uuid, p_key uuid, p_ref_hash bytea,
                                      p_name text, p_category text)
RETURNS TABLE (subject_id uuid, ref_hash bytea, subject_generation integer,
               subject_created_at timestamptz, restricted_at timestamptz,
               ref_copy_live boolean, current_version integer, current_category text,
               current_data_key_id uuid, subject_key_id uuid, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea, settings jsonb)
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
                THEN (SELECT t.settings FROM tenants t WHERE t.id = p_tenant) END
      FROM dv_subject(p_tenant, p_ref_hash) s
      LEFT JOIN records r ON r.tenant_id = p_tenant AND r.subject_id = s.id
                         AND r.name = p_name AND r.current
      LEFT JOIN subject_keys sk ON sk.tenant_id = p_tenant AND sk.subject_id = s.id
                               AND sk.category = coalesce(r.category, p_category)
                               AND sk.generation = s.generation
      LEFT JOIN tenant_keks k ON k.tenant_id = p_tenant AND k.version = sk.kek_version;
END
$$;

-- PUT record, second statement. Under the subject's row lock (writers of a subject's
-- records queue on it; lock order subject, then record, for every writer), check that
-- what the first statement read still holds: the same generation, not restricted, the
-- reference copy readable, the same current version (or still none), the subject key
-- live. If not (a concurrent write, erasure, restriction), change nothing and return no
-- version: the caller starts again. Else store the new version's data key; retire the
-- current version, shredding its data key unless a hold covers it; insert the new version
-- with the next number. Returns the new version and the holds that kept the old one.
CREATE FUNCTION dv_record_write(p_tenant uuid, p_key uuid, p_subject uuid, p_name text,
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
            UPDATE data_keys SET wrapped_key = NULL, destroyed_at = now()
             WHERE tenant_id = p_tenant AND id = p_old_data_key AND wrapped_key IS NOT NULL;
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

-- Access log group commit in one statement when the writer knows the chain head: lock
-- the head; if it is still (p_expected_seq, p_expected_hash), append the rows, move the
-- head and note the keys' last use, and return appended = true. Otherwise (another
-- process appended, or the head does not exist yet) change nothing and return the head
-- as it is, for the writer to chain from under the lock (access_log.py).
CREATE FUNCTION dv_access_log_append(
    p_tenant uuid, p_expected_seq bigint, p_expected_hash bytea,
    p_seqs bigint[], p_ats timestamptz[], p_request_ids text[], p_key_ids uuid[],
    p_key_prefixes text[], p_ips inet[], p_ip_hashes bytea[], p_methods text[],
    p_routes text[], p_statuses integer[], p_bytes_in bigint[], p_bytes_out bigint[],
    p_subject_ref_hashes bytea[], p_artefact_ids uuid[], p_prev_hashes bytea[],
    p_row_hashes bytea[], p_head_seq bigint, p_head_hash bytea,
    p_used_key_ids uuid[], p_used_ats timestamptz[], p_used_ips inet[])
RETURNS TABLE (appended boolean, seq bigint, row_hash bytea)
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_seq bigint;
    v_hash bytea;
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    SELECT h.seq, h.row_hash INTO v_seq, v_hash FROM access_log_heads h
     WHERE h.tenant_id = p_tenant FOR UPDATE;
    IF NOT FOUND OR v_seq <> p_expected_seq OR v_hash <> p_expected_hash THEN
        RETURN QUERY SELECT false, v_seq, v_hash;
        RETURN;
    END IF;
    UPDATE api_keys k SET last_used_at = u.at, last_used_ip = u.ip
      FROM unnest(p_used_key_ids, p_used_ats, p_used_ips) AS u(id, at, ip)
     WHERE k.tenant_id = p_tenant AND k.id = u.id
       AND (k.last_used_at IS NULL OR k.last_used_at < u.at);
    INSERT INTO access_log (tenant_id, seq, at, request_id, api_key_id, key_prefix, ip,
                            ip_hash, method, route, status, bytes_in, bytes_out,
                            subject_ref_hash, artefact_id, prev_hash, row_hash)
    SELECT p_tenant, * FROM unnest(p_seqs, p_ats, p_request_ids, p_key_ids, p_key_prefixes,
                                   p_ips, p_ip_hashes, p_methods, p_routes, p_statuses,
                                   p_bytes_in, p_bytes_out, p_subject_ref_hashes,
                                   p_artefact_ids, p_prev_hashes, p_row_hashes);
    UPDATE access_log_heads SET seq = p_head_seq, row_hash = p_head_hash, updated_at = now()
     WHERE tenant_id = p_tenant;
    RETURN QUERY SELECT true, p_head_seq, p_head_hash;
END
$$;

REVOKE ALL ON FUNCTION
    dv_subject(uuid, bytea), dv_holds_lock_key(uuid),
    dv_holds_covering(uuid, uuid, text[]),
    dv_retire_record(uuid, uuid, text, integer, boolean),
    dv_require_live_key(uuid, uuid),
    dv_record_read(uuid, uuid, bytea, text),
    dv_record_list(uuid, uuid, bytea, timestamptz, text, integer, boolean),
    dv_record_write_state(uuid, uuid, bytea, text, text),
    dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid, uuid, uuid, bytea,
                    bytea, integer),
    dv_access_log_append(uuid, bigint, bytea, bigint[], timestamptz[], text[], uuid[], text[],
                         inet[], bytea[], text[], text[], integer[], bigint[], bigint[],
                         bytea[], uuid[], bytea[], bytea[], bigint, bytea, uuid[],
                         timestamptz[], inet[])
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dv_subject(uuid, bytea), dv_holds_lock_key(uuid),
    dv_holds_covering(uuid, uuid, text[]),
    dv_retire_record(uuid, uuid, text, integer, boolean),
    dv_require_live_key(uuid, uuid),
    dv_record_read(uuid, uuid, bytea, text),
    dv_record_list(uuid, uuid, bytea, timestamptz, text, integer, boolean),
    dv_record_write_state(uuid, uuid, bytea, text, text),
    dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid, uuid, uuid, bytea,
                    bytea, integer),
    dv_access_log_append(uuid, bigint, bytea, bigint[], timestamptz[], text[], uuid[], text[],
                         inet[], bytea[], text[], text[], integer[], bigint[], bigint[],
                         bytea[], uuid[], bytea[], bytea[], bigint, bytea, uuid[],
                         timestamptz[], inet[])
    TO datavault_app;
