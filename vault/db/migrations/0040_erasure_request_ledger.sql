-- An erasure request writes its own shred-ledger entry (issue 19, fifth round: goal 5).
--
-- The request was one statement (dv_erasure_request, migration 0028) inside a transaction
-- of four round trips: BEGIN, the statement, the `erasure_request` ledger row the vault
-- built from the row it returned, COMMIT. Now the statement writes that row itself, so a
-- request is one statement in its own transaction: one round trip, its commit durable
-- before the answer as before.
--
-- That moves what a ledger entry says of an erasure into SQL, once, for every writer:
--
-- - dv_ledger_time: a time as the ledger's facts write it, what Python's
--   datetime.isoformat() wrote for the vault's UTC times before (`2026-12-06T14:20:00
--   .123456+00:00`, no fraction when it is zero), so entries from before and after read
--   the same;
-- - dv_erasure_identity: what every entry about an erasure says of it (the shred's
--   `erasure` entry, which the executor builds with its items, and the `erasure_request`
--   instruction), the one shape both restore replays read
--   (vault/services/ledger_instructions.py, ledger_controls.py);
-- - dv_record_erasure_request: the `erasure_request` instruction of an erasure row as it
--   stands in the caller's transaction (its identity, status and whether braked), into
--   the outbox, stamped with its insert's time like every instruction row
--   (ledger_instructions.sql `record`): the request statement and a cancellation call it.
CREATE FUNCTION dv_ledger_time(p_at timestamptz) RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT to_char(p_at AT TIME ZONE 'UTC',
                   CASE WHEN date_trunc('second', p_at) = p_at
                        THEN 'YYYY-MM-DD"T"HH24:MI:SS'
                        ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US' END) || '+00:00'
$$;

CREATE FUNCTION dv_erasure_identity(e erasures) RETURNS jsonb
LANGUAGE sql STABLE
AS $$
    SELECT jsonb_build_object(
        'erasure_id', e.id::text,
        'subject_ref_hash', encode(e.subject_ref_hash, 'hex'),
        'subject_id', e.subject_id::text,
        'from_generation', e.from_generation,
        'generation', e.generation,
        'requested_at', dv_ledger_time(e.requested_at),
        'requested_by', e.requested_by::text,
        'not_before', dv_ledger_time(e.not_before),
        'due_at', dv_ledger_time(e.due_at))
$$;

CREATE FUNCTION dv_record_erasure_request(e erasures) RETURNS void
LANGUAGE sql VOLATILE
AS $$
    -- No erasure_id: an instruction row holds up no erasure's completion.
    INSERT INTO ledger_outbox (tenant_id, key_kind, key_id, erasure_id, destroyed_at, fact)
    VALUES (e.tenant_id, 'erasure_request', e.id::text, NULL, clock_timestamp(),
            dv_erasure_identity(e)
            || jsonb_build_object('status', e.status, 'braked', e.braked))
$$;

-- Migration 0028's statement, the same steps under the same locks, and one more at the
-- end: the answer, when it is a new instruction or a scheduled one (extended or as it
-- was), goes into the shred ledger from the row as this statement holds it locked, so
-- no cancellation can come between.
CREATE OR REPLACE FUNCTION dv_erasure_request(
    p_tenant uuid, p_key uuid, p_ref_hash bytea, p_id uuid, p_reason text, p_reference text,
    p_requested_by uuid, p_now timestamptz, p_due_at timestamptz, p_settings jsonb,
    p_limit integer, p_not_before timestamptz, p_not_before_braked timestamptz,
    p_brake_detail text, p_extend_detail text)
RETURNS TABLE (created boolean, erasure erasures, items erasure_items[], settings jsonb)
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    v_subject_id uuid;
    v_generation integer;
    v_row erasures;
    v_answer erasures;
    v_written_since boolean;
    v_settings jsonb;
    v_braked boolean := false;
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    IF p_key IS NOT NULL THEN
        PERFORM dv_require_live_key(p_tenant, p_key);
    END IF;
    SELECT s.id, s.generation INTO v_subject_id, v_generation
      FROM subjects s WHERE s.tenant_id = p_tenant AND s.ref_hash = p_ref_hash FOR UPDATE;
    -- Every running erasure of the subject is locked; the first is the answer.
    FOR v_row IN
        SELECT * FROM erasures e
         WHERE e.tenant_id = p_tenant AND e.subject_ref_hash = p_ref_hash
           AND e.status IN ('scheduled', 'in_progress')
         ORDER BY e.status = 'scheduled' DESC, e.requested_at DESC, e.id DESC
           FOR UPDATE
    LOOP
        IF v_answer.id IS NULL THEN
            v_answer := v_row;
        END IF;
    END LOOP;
    IF v_answer.id IS NOT NULL THEN
        v_written_since := v_subject_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM subject_keys k
             WHERE k.tenant_id = p_tenant AND k.subject_id = v_subject_id
               AND k.generation > (CASE WHEN v_answer.subject_id IS NOT NULL
                                        THEN v_answer.generation ELSE 0 END)
               AND k.wrapped_key IS NOT NULL);
        IF v_written_since AND v_answer.status = 'scheduled' THEN
            UPDATE erasures e
               SET subject_id = v_subject_id, generation = v_generation,
                   from_generation = coalesce(e.from_generation,
                                              dv_erasure_from_generation(p_tenant, v_subject_id))
             WHERE e.tenant_id = p_tenant AND e.id = v_answer.id AND e.status = 'scheduled';
            UPDATE subjects s SET generation = s.generation + 1
             WHERE s.tenant_id = p_tenant AND s.id = v_subject_id;
            INSERT INTO erasure_events (tenant_id, erasure_id, from_status, to_status,
                                        api_key_id, detail)
            VALUES (p_tenant, v_answer.id, 'scheduled', 'scheduled', p_requested_by,
                    p_extend_detail);
        END IF;
        IF NOT v_written_since OR v_answer.status = 'scheduled' THEN
            SELECT * INTO v_row FROM erasures e
             WHERE e.tenant_id = p_tenant AND e.id = v_answer.id;
            IF v_row.status = 'scheduled' THEN
                PERFORM dv_record_erasure_request(v_row);
            END IF;
            RETURN QUERY
            SELECT false, v_row, ARRAY(SELECT i FROM erasure_items i
                                        WHERE i.tenant_id = p_tenant AND i.erasure_id = v_row.id
                                        ORDER BY i.category, i.key_id), NULL::jsonb;
            RETURN;
        END IF;
        -- In progress with data written since: a new instruction for that data.
    END IF;
    SELECT t.settings INTO v_settings FROM tenants t WHERE t.id = p_tenant;
    IF v_settings IS DISTINCT FROM p_settings THEN
        -- Changed since the caller read them: nothing written; it decides again.
        RETURN QUERY SELECT NULL::boolean, NULL::erasures, NULL::erasure_items[], v_settings;
        RETURN;
    END IF;
    IF p_limit IS NOT NULL THEN
        -- Serialises counting and inserting a tenant's erasures: a concurrent burst
        -- cannot overshoot the rate brake. Each statement here reads a fresh snapshot,
        -- so the count sees what the lock's previous holder committed.
        PERFORM pg_advisory_xact_lock(
            hashtextextended('datavault.erasure-rate/' || p_tenant::text, 0));
        v_braked := (SELECT count(*) FROM erasures e
                      WHERE e.tenant_id = p_tenant
                        AND e.requested_at > now() - interval '1 hour') >= p_limit;
    END IF;
    IF v_subject_id IS NOT NULL THEN
        UPDATE subjects s SET generation = s.generation + 1
         WHERE s.tenant_id = p_tenant AND s.id = v_subject_id;
    END IF;
    -- It covers the generations after the subject's previous erasure that was not
    -- cancelled, up to the subject's generation as it was locked.
    INSERT INTO erasures (tenant_id, id, subject_ref_hash, subject_id, generation,
                          from_generation, status, reason, reference, requested_at,
                          requested_by, not_before, due_at, braked)
    VALUES (p_tenant, p_id, p_ref_hash, v_subject_id, v_generation,
            CASE WHEN v_subject_id IS NULL THEN NULL
                 ELSE dv_erasure_from_generation(p_tenant, v_subject_id) END,
            'scheduled', p_reason, p_reference, p_now, p_requested_by,
            CASE WHEN v_braked THEN p_not_before_braked ELSE p_not_before END, p_due_at,
            v_braked)
    RETURNING * INTO v_row;
    INSERT INTO erasure_events (tenant_id, erasure_id, from_status, to_status, api_key_id,
                                detail)
    VALUES (p_tenant, p_id, NULL, 'scheduled', p_requested_by,
            CASE WHEN v_braked THEN p_brake_detail END);
    PERFORM dv_record_erasure_request(v_row);
    RETURN QUERY SELECT true, v_row, '{}'::erasure_items[], NULL::jsonb;
END
$$;

REVOKE ALL ON FUNCTION dv_ledger_time(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_ledger_time(timestamptz) TO datavault_app;
REVOKE ALL ON FUNCTION dv_erasure_identity(erasures) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_erasure_identity(erasures) TO datavault_app;
REVOKE ALL ON FUNCTION dv_record_erasure_request(erasures) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_record_erasure_request(erasures) TO datavault_app;
