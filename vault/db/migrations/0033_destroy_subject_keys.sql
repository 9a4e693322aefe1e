-- A subject's keys of one generation destroyed in one statement (issue 19, fourth round:
-- KeyRing.destroy_subject_keys was 3 + n round trips per erasure: the subject's lock,
-- its live keys, the holds covering them, then one destroy per key; the erasure
-- executor sent them for every erasure of a burst inside its batch's transaction).
--
-- The same statements in the same order under the same locks as the key ring sent them,
-- so this is where that path now lives, once (vault/services/keyring.py calls it; the
-- erasure executor and a tenant's closure call the key ring):
--
-- 1. the subject's row lock (FOR UPDATE), which restrictions, erasure requests, holds
--    and key-creating writers also take;
-- 2. its live subject keys of p_generation, all of them (p_categories NULL) or those
--    categories;
-- 3. the holds covering those categories: dv_holds_covering (migration 0016), the one
--    hold check of every destroy path, under the tenant's holds lock;
-- 4. each key no hold covers destroyed with its shred-ledger outbox row naming
--    p_erasure: dv_destroy_subject_key (migration 0016).
--
-- One row per key: destroyed_at set (destroyed now) or hold_ids set (kept by those
-- holds). A key destroyed already by the time its turn came (neither) is left out.
CREATE FUNCTION dv_destroy_subject_keys(p_tenant uuid, p_subject uuid, p_generation integer,
                                        p_categories text[], p_erasure uuid)
RETURNS TABLE (key_id uuid, category text, destroyed_at timestamptz, hold_ids uuid[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_key record;
    v_covering uuid[];
BEGIN
    PERFORM 1 FROM subjects WHERE tenant_id = p_tenant AND id = p_subject FOR UPDATE;
    FOR v_key IN
        SELECT k.id, k.category FROM subject_keys k
         WHERE k.tenant_id = p_tenant AND k.subject_id = p_subject
           AND k.generation = p_generation AND k.wrapped_key IS NOT NULL
           AND (p_categories IS NULL OR k.category = ANY (p_categories))
         ORDER BY k.category
    LOOP
        -- The holds covering this key's category, as dv_holds_covering decides it (its
        -- first call takes the tenant's holds lock, held to the end of the transaction).
        v_covering := ARRAY(SELECT h.id FROM dv_holds_covering(p_tenant, p_subject,
                                                                ARRAY[v_key.category]) h
                             ORDER BY h.id);
        key_id := v_key.id;
        category := v_key.category;
        IF cardinality(v_covering) > 0 THEN
            destroyed_at := NULL;
            hold_ids := v_covering;
            RETURN NEXT;
        ELSE
            destroyed_at := dv_destroy_subject_key(p_tenant, v_key.id, p_erasure);
            hold_ids := NULL;
            IF destroyed_at IS NOT NULL THEN
                RETURN NEXT;
            END IF;
        END IF;
    END LOOP;
END
$$;

REVOKE ALL ON FUNCTION dv_destroy_subject_keys(uuid, uuid, integer, text[], uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_destroy_subject_keys(uuid, uuid, integer, text[], uuid)
    TO datavault_app;
