-- Every root-key epoch (and every `keys rotate`) changes the bytes the data keys' wrapping
-- depends on: each live subject key gets new bytes, and every live data key under it is
-- rewrapped under them, in one transaction that holds the subject's row lock. A data key
-- that survives only in an old backup, WAL or dead tuple is wrapped under subject-key
-- bytes that exist nowhere but under a retired epoch's root key: deleted, replaced and
-- expired objects become unreadable in old backups, not only erased subjects.
--
-- A writer wraps a new data key under the subject key as it read it. It records which
-- bytes those were (the subject key's kek_version, which every rewrap moves on), and the
-- database refuses the key if the subject key has moved on since (SQLSTATE DVK01), checked
-- under the subject's row lock that the rewrap holds: the writer reads the key again.

ALTER TABLE data_keys ADD COLUMN subject_key_version integer;

-- Room on each page for the rewrapped version of its rows (the same size): an epoch's
-- update of every live key can then stay on the page (a HOT update) instead of adding an
-- entry to every index. Applies to pages written from now on.
ALTER TABLE data_keys SET (fillfactor = 75);
ALTER TABLE subject_keys SET (fillfactor = 75);

CREATE OR REPLACE FUNCTION dv_key_in_current_generation() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_current integer;
    v_key_generation integer;
    v_key_live boolean;
    v_key_version integer;
BEGIN
    IF TG_TABLE_NAME = 'subject_keys' THEN
        v_key_generation := NEW.generation;
        v_key_live := true;
        -- FOR SHARE: an erasure request (which moves the generation on with an UPDATE)
        -- waits until this transaction ends, and then covers the key it created.
        SELECT s.generation INTO v_current FROM subjects s
         WHERE s.tenant_id = NEW.tenant_id AND s.id = NEW.subject_id FOR SHARE;
    ELSE
        -- The subject's row lock first, in a statement of its own: it also orders this
        -- against a rewrap of the subject's keys, which holds the row FOR UPDATE while it
        -- gives the subject key new bytes. The key is read in the next statement, with a
        -- snapshot taken after the lock was granted (a join locking only the subject
        -- would recheck the subject row but keep the key row it first saw).
        SELECT s.generation INTO v_current FROM subject_keys k
          JOIN subjects s ON s.tenant_id = k.tenant_id AND s.id = k.subject_id
         WHERE k.tenant_id = NEW.tenant_id AND k.id = NEW.subject_key_id
           FOR SHARE OF s;
        SELECT s.generation, k.generation, k.wrapped_key IS NOT NULL, k.kek_version
          INTO v_current, v_key_generation, v_key_live, v_key_version
          FROM subject_keys k JOIN subjects s ON s.tenant_id = k.tenant_id AND s.id = k.subject_id
         WHERE k.tenant_id = NEW.tenant_id AND k.id = NEW.subject_key_id;
        IF NEW.subject_key_version IS NOT NULL
           AND NEW.subject_key_version IS DISTINCT FROM v_key_version THEN
            RAISE EXCEPTION 'the subject key was rewrapped since it was read'
                USING ERRCODE = 'DVK01';
        END IF;
    END IF;
    IF v_current IS DISTINCT FROM v_key_generation OR NOT v_key_live THEN
        RAISE EXCEPTION 'a key may only be created in the subject''s current generation'
            USING ERRCODE = 'DVG01';
    END IF;
    RETURN NEW;
END
$$;

-- dv_record_write (0017) with the subject key's version the value's data key was wrapped
-- under: if the subject key has been rewrapped since (a new epoch), nothing is written and
-- no row returns, so the caller reads the state again, as for any other change. And the
-- version it replaces is kept, not destroyed, when it lies in a generation an erasure
-- covers (only that erasure destroys what it keeps: a new life writing a record of the
-- same name must not shred what statutory retention or a hold keeps of the old one), as
-- it is kept when a hold covers it. The 14-argument form of 0017 was never released: it
-- goes; the 13-argument form of 0012 stays for processes of the previous release.
DROP FUNCTION dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid, integer,
                              uuid, uuid, bytea, bytea, integer);
CREATE FUNCTION dv_record_write(p_tenant uuid, p_key uuid, p_subject uuid, p_name text,
                                p_category text, p_generation integer, p_old_version integer,
                                p_old_data_key uuid, p_version integer, p_data_key uuid,
                                p_subject_key uuid, p_wrapped_data_key bytea, p_sealed bytea,
                                p_size integer, p_subject_key_version integer)
RETURNS TABLE (version integer, created_at timestamptz, kept_by uuid[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
DECLARE
    v_held uuid[] := '{}';
    v_version integer;
    v_data_key uuid;
    v_old_generation integer;
    v_kept boolean;
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
    SELECT r.version, r.data_key_id, r.generation INTO v_version, v_data_key, v_old_generation
      FROM records r
     WHERE r.tenant_id = p_tenant AND r.subject_id = p_subject AND r.name = p_name
       AND r.current
       FOR UPDATE;
    -- A value sealed for another version than the one this write would store is never
    -- stored (its object identity would name another record version), nor one whose
    -- data key was wrapped under subject-key bytes a rewrap has replaced.
    IF v_version IS DISTINCT FROM p_old_version OR v_data_key IS DISTINCT FROM p_old_data_key
       OR p_version IS DISTINCT FROM dv_record_next_version(p_tenant, p_subject, p_name)
       OR NOT EXISTS(SELECT 1 FROM subject_keys sk
                      WHERE sk.tenant_id = p_tenant AND sk.id = p_subject_key
                        AND sk.subject_id = p_subject AND sk.category = p_category
                        AND sk.generation = p_generation AND sk.wrapped_key IS NOT NULL
                        AND sk.kek_version = p_subject_key_version)
    THEN
        RETURN;
    END IF;
    INSERT INTO data_keys (tenant_id, id, subject_key_id, purpose, wrapped_key,
                           subject_key_version)
    VALUES (p_tenant, p_data_key, p_subject_key, 'record', p_wrapped_data_key,
            p_subject_key_version);
    IF p_old_version IS NOT NULL THEN
        v_held := ARRAY(SELECT h.id FROM dv_holds_covering(p_tenant, p_subject,
                                                           ARRAY[p_category]) h);
        v_kept := cardinality(v_held) > 0
                  OR v_old_generation = ANY (dv_erased_generations(p_tenant, p_subject));
        IF NOT v_kept THEN
            PERFORM dv_destroy_data_key(p_tenant, p_old_data_key);
        END IF;
        PERFORM dv_retire_record(p_tenant, p_subject, p_name, p_old_version, NOT v_kept);
    END IF;
    RETURN QUERY
    INSERT INTO records (tenant_id, subject_id, name, version, category, generation,
                         data_key_id, value_sealed, size, current)
    VALUES (p_tenant, p_subject, p_name, p_version, p_category, p_generation, p_data_key,
            p_sealed, p_size, true)
    RETURNING records.version, records.created_at, v_held;
END
$$;

REVOKE ALL ON FUNCTION dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid,
                                       integer, uuid, uuid, bytea, bytea, integer, integer)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_record_write(uuid, uuid, uuid, text, text, integer, integer, uuid,
                                          integer, uuid, uuid, bytea, bytea, integer, integer)
    TO datavault_app;

-- Start-up reconciliation of a restored backup (vault/services/ledger.py): the subject
-- keys the shred ledger names that this database still holds are destroyed again, with
-- all they take with them (dv_subject_key_gone, as when they were first destroyed), and a
-- subject whose current generation lost its keys moves to the next generation, so what
-- is written for it from now on is a new life (the restored database may have lost the
-- erasure request that moved it on). Returns how many keys were destroyed again.
CREATE FUNCTION dv_redestroy_subject_keys(p_tenant uuid, p_keys uuid[], p_times timestamptz[])
RETURNS integer
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_key record;
    v_count integer := 0;
BEGIN
    FOR v_key IN
        UPDATE subject_keys s SET wrapped_key = NULL,
                                  destroyed_at = coalesce(s.destroyed_at, l.destroyed_at)
          FROM unnest(p_keys, p_times) AS l (id, destroyed_at)
         WHERE s.tenant_id = p_tenant AND s.id = l.id AND s.wrapped_key IS NOT NULL
        RETURNING s.id, s.subject_id, s.generation, s.destroyed_at
    LOOP
        PERFORM dv_subject_key_gone(p_tenant, v_key.id, v_key.destroyed_at);
        UPDATE subjects SET generation = generation + 1
         WHERE tenant_id = p_tenant AND id = v_key.subject_id AND generation = v_key.generation;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

REVOKE ALL ON FUNCTION dv_redestroy_subject_keys(uuid, uuid[], timestamptz[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_redestroy_subject_keys(uuid, uuid[], timestamptz[])
    TO datavault_app;
