-- Every erasure instruction is carried out, and each deletion rule is written once.
--
-- 1. A hold in force, and what it covers: one function each, used by every query.
-- 2. What an erasure covers: the generations after the previous erasure of the subject
--    that was not cancelled, up to its own (from_generation .. generation), fixed when
--    it is requested. The read paths, the executor and `datavault check deletion` all
--    ask dv_erased_generations / the erasure's own range, so what a later erasure
--    shreds and what the application may read can no longer differ.
-- 3. A held erasure no longer blocks later instructions: at most one `scheduled` erasure
--    per subject (a repeated request while one is scheduled or in progress answers with
--    it unless data was written since).
-- 4. Keys only ever in the subject's current generation: the database refuses a subject
--    or data key for an older generation, checked under a share lock on the subject row
--    that the erasure request's update of the generation must wait for.
-- 5. One function per key kind destroys the key and writes its shred-ledger row.
-- 6. API keys name their owner (the person), for two-person hold releases; a release
--    request can be withdrawn.
-- 7. A read-only auditor role for `datavault check deletion`, which sees every tenant.

-- 1. Holds -----------------------------------------------------------------------------

-- Whether the hold is in force at p_at: not released by then, not expired by then.
-- Asked with now() by every query that decides what a hold keeps. (A release committed
-- after the asking transaction began counts as not yet released for it: the safe side.)
-- `datavault check deletion` asks with now() minus its grace, so a key whose hold was
-- released moments ago is not yet reported as one that should be gone.
CREATE FUNCTION dv_hold_in_force(p_hold holds, p_at timestamptz) RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (p_hold.released_at IS NULL OR p_hold.released_at > p_at)
       AND (p_hold.expires_at IS NULL OR p_hold.expires_at > p_at)
$$;

-- Whether the hold names this subject (by reference hash; NULL = the whole tenant) and
-- this category (NULL = all categories).
CREATE FUNCTION dv_hold_covers(p_hold holds, p_ref_hash bytea, p_category text)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT (p_hold.subject_ref_hash IS NULL OR p_hold.subject_ref_hash = p_ref_hash)
       AND (p_hold.categories IS NULL OR p_category = ANY (p_hold.categories))
$$;

CREATE OR REPLACE FUNCTION dv_held_now(p_tenant uuid, p_ref_hash bytea, p_category text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT EXISTS (
        SELECT 1 FROM holds h
         WHERE h.tenant_id = p_tenant AND dv_hold_in_force(h, now())
           AND dv_hold_covers(h, p_ref_hash, p_category))
$$;

CREATE OR REPLACE FUNCTION dv_holds_covering(p_tenant uuid, p_subject uuid, p_categories text[])
RETURNS TABLE (id uuid, categories text[])
LANGUAGE plpgsql VOLATILE
AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock_shared(dv_holds_lock_key(p_tenant));
    RETURN QUERY
    SELECT h.id, h.categories FROM holds h
      JOIN subjects s ON s.tenant_id = h.tenant_id AND s.id = p_subject
     WHERE h.tenant_id = p_tenant AND dv_hold_in_force(h, now())
       AND EXISTS (SELECT 1 FROM unnest(p_categories) c
                    WHERE dv_hold_covers(h, s.ref_hash, c));
END
$$;

-- 2. What an erasure covers ----------------------------------------------------------------

ALTER TABLE erasures ADD COLUMN from_generation integer;
-- When the erasure's status or contents last changed (a client following changes asks
-- for those since a time).
ALTER TABLE erasures ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

-- The generation an erasure of this subject requested now starts at: the one after the
-- newest generation an erasure that was not cancelled covers.
CREATE FUNCTION dv_erasure_from_generation(p_tenant uuid, p_subject uuid) RETURNS integer
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(max(e.generation), 0) + 1 FROM erasures e
     WHERE e.tenant_id = p_tenant AND e.subject_id = p_subject AND e.status <> 'cancelled'
$$;

-- Every generation of the subject that an erasure (not cancelled) covers: only the
-- compliance scope reads what is left of them (kept by holds or retention).
CREATE FUNCTION dv_erased_generations(p_tenant uuid, p_subject uuid) RETURNS integer[]
LANGUAGE sql STABLE
AS $$
    SELECT coalesce(array_agg(DISTINCT g ORDER BY g), '{}')
      FROM erasures e, generate_series(e.from_generation, e.generation) AS g
     WHERE e.tenant_id = p_tenant AND e.subject_id = p_subject AND e.status <> 'cancelled'
       AND e.generation IS NOT NULL
$$;

-- Existing erasures: the range the executor used to claim (the generation, and earlier
-- ones only cancelled erasures had named). FORCE ROW LEVEL SECURITY applies to the owner
-- too, so the backfill lifts it for the statement.
ALTER TABLE erasures NO FORCE ROW LEVEL SECURITY;
UPDATE erasures e
   SET from_generation = coalesce((SELECT max(p.generation) FROM erasures p
                                    WHERE p.tenant_id = e.tenant_id AND p.subject_id = e.subject_id
                                      AND p.status <> 'cancelled'
                                      AND p.generation < e.generation), 0) + 1
 WHERE e.generation IS NOT NULL;
-- completed_at says completed: a held erasure has not completed.
UPDATE erasures SET completed_at = NULL WHERE status <> 'completed' AND completed_at IS NOT NULL;
UPDATE erasures
   SET updated_at = greatest(requested_at, shredded_at, completed_at, cancelled_at);
ALTER TABLE erasures FORCE ROW LEVEL SECURITY;

ALTER TABLE erasures
    ADD CONSTRAINT erasures_generation_range
        CHECK ((generation IS NULL) = (from_generation IS NULL) AND from_generation <= generation),
    ADD CONSTRAINT erasures_completed_at_means_completed
        CHECK (completed_at IS NULL OR status = 'completed');

CREATE OR REPLACE FUNCTION dv_subject(p_tenant uuid, p_ref_hash bytea)
RETURNS TABLE (id uuid, ref_hash bytea, generation integer, created_at timestamptz,
               restricted_at timestamptz, ref_data_key_id uuid, erased_generations integer[],
               ref_copy_live boolean)
LANGUAGE sql STABLE
AS $$
    SELECT s.id, s.ref_hash, s.generation, s.created_at, s.restricted_at, s.ref_data_key_id,
           dv_erased_generations(s.tenant_id, s.id),
           s.ref_sealed IS NOT NULL AND EXISTS(SELECT 1 FROM data_keys d
                   WHERE d.tenant_id = s.tenant_id AND d.id = s.ref_data_key_id
                     AND d.wrapped_key IS NOT NULL)
      FROM subjects s WHERE s.tenant_id = p_tenant AND s.ref_hash = p_ref_hash
$$;

-- 3. One scheduled erasure per subject ---------------------------------------------------

DROP INDEX erasures_one_open;
CREATE UNIQUE INDEX erasures_one_scheduled ON erasures (tenant_id, subject_ref_hash)
    WHERE status = 'scheduled';
CREATE INDEX erasures_updated ON erasures (tenant_id, updated_at, id);
CREATE INDEX erasures_running ON erasures (tenant_id, subject_ref_hash, requested_at DESC)
    WHERE status IN ('scheduled', 'in_progress');

-- 4. Keys only in the current generation ---------------------------------------------------

-- SQLSTATE DVG01: a key for a generation that is no longer the subject's current one (an
-- erasure was requested since the writer read the subject). The writer reads the subject
-- again and writes into the new generation.
CREATE FUNCTION dv_key_in_current_generation() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    v_current integer;
    v_key_generation integer;
    v_key_live boolean;
BEGIN
    IF TG_TABLE_NAME = 'subject_keys' THEN
        v_key_generation := NEW.generation;
        v_key_live := true;
        -- FOR SHARE: an erasure request (which moves the generation on with an UPDATE)
        -- waits until this transaction ends, and then covers the key it created.
        SELECT s.generation INTO v_current FROM subjects s
         WHERE s.tenant_id = NEW.tenant_id AND s.id = NEW.subject_id FOR SHARE;
    ELSE
        SELECT s.generation, k.generation, k.wrapped_key IS NOT NULL
          INTO v_current, v_key_generation, v_key_live
          FROM subject_keys k JOIN subjects s ON s.tenant_id = k.tenant_id AND s.id = k.subject_id
         WHERE k.tenant_id = NEW.tenant_id AND k.id = NEW.subject_key_id
           FOR SHARE OF s;
    END IF;
    IF v_current IS DISTINCT FROM v_key_generation OR NOT v_key_live THEN
        RAISE EXCEPTION 'a key may only be created in the subject''s current generation'
            USING ERRCODE = 'DVG01';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER subject_keys_current_generation BEFORE INSERT ON subject_keys
    FOR EACH ROW EXECUTE FUNCTION dv_key_in_current_generation();
CREATE TRIGGER data_keys_current_generation BEFORE INSERT ON data_keys
    FOR EACH ROW EXECUTE FUNCTION dv_key_in_current_generation();

-- 5. Destroying a key writes its ledger row ----------------------------------------------

-- What a destroyed subject key takes with it, in its transaction: the data keys under it
-- (unreadable anyway; nulled as hygiene, covered by the subject key's ledger entry), the
-- artefacts and record versions sealed under those (marked deleted; their blobs go with
-- the sweeper) and the sealed copy of the subject's reference if it was among them. The
-- erasure executor, a tenant's closure and the start-up reconciliation of a restored
-- backup all leave the same state behind.
CREATE FUNCTION dv_subject_key_gone(p_tenant uuid, p_key uuid, p_destroyed_at timestamptz)
RETURNS void
LANGUAGE sql VOLATILE
AS $$
    UPDATE data_keys SET wrapped_key = NULL, destroyed_at = p_destroyed_at
     WHERE tenant_id = p_tenant AND subject_key_id = p_key AND wrapped_key IS NOT NULL;
    UPDATE artefacts SET state = 'deleted', deleted_at = coalesce(deleted_at, p_destroyed_at),
           metadata_sealed = NULL
     WHERE tenant_id = p_tenant AND state IN ('active', 'uploading')
       AND data_key_id IN (SELECT id FROM data_keys
                            WHERE tenant_id = p_tenant AND subject_key_id = p_key);
    UPDATE records SET value_sealed = NULL, current = false,
           superseded_at = coalesce(superseded_at, p_destroyed_at)
     WHERE tenant_id = p_tenant AND (value_sealed IS NOT NULL OR current)
       AND data_key_id IN (SELECT id FROM data_keys
                            WHERE tenant_id = p_tenant AND subject_key_id = p_key);
    UPDATE subjects SET ref_sealed = NULL, restriction_reason_sealed = NULL
     WHERE tenant_id = p_tenant AND ref_sealed IS NOT NULL
       AND ref_data_key_id IN (SELECT id FROM data_keys
                                WHERE tenant_id = p_tenant AND subject_key_id = p_key);
$$;

-- A subject key, all it takes with it (dv_subject_key_gone) and its shred-ledger outbox
-- row, in the caller's transaction. Returns destroyed_at, or NULL when it was destroyed
-- already.
CREATE FUNCTION dv_destroy_subject_key(p_tenant uuid, p_key uuid, p_erasure uuid)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_destroyed_at timestamptz;
BEGIN
    UPDATE subject_keys SET wrapped_key = NULL, destroyed_at = now()
     WHERE tenant_id = p_tenant AND id = p_key AND wrapped_key IS NOT NULL
    RETURNING destroyed_at INTO v_destroyed_at;
    IF v_destroyed_at IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM dv_subject_key_gone(p_tenant, p_key, v_destroyed_at);
    INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, erasure_id, destroyed_at)
    VALUES (p_tenant, 'subject', p_key::text, p_erasure, v_destroyed_at);
    RETURN v_destroyed_at;
END
$$;

-- Every live KEK version of a closing tenant, each with its outbox row.
CREATE FUNCTION dv_destroy_tenant_keks(p_tenant uuid)
RETURNS TABLE (version integer, destroyed_at timestamptz)
LANGUAGE sql VOLATILE
AS $$
    WITH destroyed AS (
        UPDATE tenant_keks SET wrapped_key = NULL, destroyed_at = now()
         WHERE tenant_id = p_tenant AND wrapped_key IS NOT NULL
        RETURNING tenant_id, version, destroyed_at
    ), logged AS (
        INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, destroyed_at)
        SELECT tenant_id, 'kek', version::text, destroyed_at FROM destroyed
    )
    SELECT version, destroyed_at FROM destroyed
$$;

-- A closing tenant's HMAC key with its outbox row; NULL when destroyed already.
CREATE FUNCTION dv_destroy_hmac_key(p_tenant uuid) RETURNS timestamptz
LANGUAGE sql VOLATILE
AS $$
    WITH destroyed AS (
        UPDATE tenant_hmac_keys SET wrapped_key = NULL, destroyed_at = now()
         WHERE tenant_id = p_tenant AND wrapped_key IS NOT NULL
        RETURNING tenant_id, destroyed_at
    )
    INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, destroyed_at)
    SELECT tenant_id, 'hmac', tenant_id::text, destroyed_at FROM destroyed
    RETURNING destroyed_at
$$;

-- 6. Owners and withdrawn release requests --------------------------------------------------

ALTER TABLE api_keys ADD COLUMN owner text;

ALTER TABLE hold_events DROP CONSTRAINT hold_events_action_check;
ALTER TABLE hold_events ADD CONSTRAINT hold_events_action_check
    CHECK (action IN ('placed', 'extended', 'annotated', 'release_requested', 'released',
                      'expired', 'release_withdrawn'));

-- 7. The auditor ----------------------------------------------------------------------------

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datavault_auditor') THEN
        CREATE ROLE datavault_auditor NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT datavault_auditor TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO datavault_auditor;
GRANT SELECT ON tenants, subjects, subject_keys, data_keys, artefacts, records, erasures,
                erasure_items, holds, ledger_outbox, ledger_head, tenant_keks,
                tenant_hmac_keys, schema_migrations
    TO datavault_auditor;
GRANT EXECUTE ON FUNCTION dv_hold_in_force(holds, timestamptz),
                          dv_hold_covers(holds, bytea, text),
                          dv_erased_generations(uuid, uuid)
    TO datavault_auditor;
CREATE POLICY auditor_read ON tenants FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON subjects FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON subject_keys FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON data_keys FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON artefacts FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON records FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON erasures FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON erasure_items FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON holds FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON ledger_outbox FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON tenant_keks FOR SELECT TO datavault_auditor USING (true);
CREATE POLICY auditor_read ON tenant_hmac_keys FOR SELECT TO datavault_auditor USING (true);

REVOKE ALL ON FUNCTION
    dv_hold_in_force(holds, timestamptz), dv_hold_covers(holds, bytea, text),
    dv_erasure_from_generation(uuid, uuid), dv_erased_generations(uuid, uuid),
    dv_subject_key_gone(uuid, uuid, timestamptz),
    dv_destroy_subject_key(uuid, uuid, uuid), dv_destroy_tenant_keks(uuid),
    dv_destroy_hmac_key(uuid)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    dv_hold_in_force(holds, timestamptz), dv_hold_covers(holds, bytea, text),
    dv_erasure_from_generation(uuid, uuid), dv_erased_generations(uuid, uuid),
    dv_subject_key_gone(uuid, uuid, timestamptz),
    dv_destroy_subject_key(uuid, uuid, uuid), dv_destroy_tenant_keks(uuid),
    dv_destroy_hmac_key(uuid)
    TO datavault_app;
