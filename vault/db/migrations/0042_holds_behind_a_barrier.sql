-- Migration 0039 closed the race between a hold and a shred (a hold that read its keys
-- live in its snapshot, committed after an erasure had shredded them and completed) by
-- share-locking the key rows the hold reads. The ninth review found that lock's cost:
-- holds and shreds lock the rows in opposite orders and deadlock (the reader answered
-- 500; the executor's batches make it happen without any widening), and a hold that
-- waited for a KEK rotation's rewrap re-checked the newest subject-key row against the
-- old KEK row and took a live key for a destroyed one.
--
-- The race is closed on the completion side instead, with no row lock: every hold takes
-- its tenant's transfer-holds lock in shared mode before it reads its keys (in a
-- statement of its own, so the read's snapshot is taken after the lock is granted), and
-- keeps it until it commits; before an erasure's completion looks for holds, the
-- publisher takes the same lock exclusively, in a transaction of its own that ends at
-- once (dv_transfer_barrier). The shred committed before the barrier, so a hold either
-- took its lock before the barrier (the barrier waits for its commit, and completion
-- sees its row) or after it (its snapshot is after the shred, and it finds the key
-- destroyed). Shared locks never wait for each other; the barrier waits only for the
-- hold statements in flight (milliseconds) and holds nothing while it waits.
CREATE FUNCTION dv_transfer_holds_lock_key(p_tenant uuid) RETURNS bigint
LANGUAGE sql IMMUTABLE
AS $$ SELECT hashtextextended('datavault.transfer_holds:' || p_tenant::text, 0) $$;

CREATE FUNCTION dv_transfer_barrier(p_tenant uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(dv_transfer_holds_lock_key(p_tenant));
END
$$;

CREATE OR REPLACE FUNCTION dv_transfer_hold(p_tenant uuid, p_transfer uuid, p_data_key uuid,
                                            p_seconds double precision)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    PERFORM pg_advisory_xact_lock_shared(dv_transfer_holds_lock_key(p_tenant));
    INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)
    SELECT p_tenant, p_transfer, p_data_key, now() + make_interval(secs => p_seconds)
      FROM data_keys d
      JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
      JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
     WHERE d.tenant_id = p_tenant AND d.id = p_data_key
       AND d.wrapped_key IS NOT NULL AND s.wrapped_key IS NOT NULL
       AND k.wrapped_key IS NOT NULL
    ON CONFLICT (tenant_id, transfer_id, data_key_id)
       DO UPDATE SET held_until = EXCLUDED.held_until;
    RETURN FOUND;
END
$$;

CREATE OR REPLACE FUNCTION dv_transfer_hold_keys(p_tenant uuid, p_transfer uuid,
                                                 p_data_keys uuid[], p_seconds double precision,
                                                 p_flush boolean)
RETURNS TABLE (id uuid, purpose text, wrapped_key bytea, subject_key_id uuid,
               subject_id uuid, category text, generation integer, kek_version integer,
               subject_wrapped bytea, kek_wrapped bytea)
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    IF NOT p_flush THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    PERFORM pg_advisory_xact_lock_shared(dv_transfer_holds_lock_key(p_tenant));
    RETURN QUERY
    WITH live AS (
        SELECT d.id, d.purpose, d.wrapped_key, s.id AS subject_key_id, s.subject_id,
               s.category, s.generation, s.kek_version, s.wrapped_key AS subject_wrapped,
               k.wrapped_key AS kek_wrapped
          FROM data_keys d
          JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
          JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
         WHERE d.tenant_id = p_tenant AND d.id = ANY(p_data_keys)
           AND d.wrapped_key IS NOT NULL AND s.wrapped_key IS NOT NULL
           AND k.wrapped_key IS NOT NULL),
    held AS (
        INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)
        SELECT p_tenant, p_transfer, live.id, now() + make_interval(secs => p_seconds)
          FROM live
        ON CONFLICT (tenant_id, transfer_id, data_key_id)
           DO UPDATE SET held_until = EXCLUDED.held_until
        RETURNING data_key_id)
    SELECT live.* FROM live JOIN held ON held.data_key_id = live.id;
END
$$;

REVOKE ALL ON FUNCTION dv_transfer_barrier(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_transfer_barrier(uuid) TO datavault_app;
