-- Requesting an erasure in one statement (issue 19, second round: it was twelve to
-- fourteen round trips: the key lookup, BEGIN, role and tenant, the subject's lock, the
-- running erasures, data written since, the settings, the rate lock and count, the next
-- generation, the insert, its event row, the wake-up, COMMIT; a burst of requests was
-- answered at 56 a second). The same statements in the same order under the same locks
-- as vault/services/erasures.py ran them before, in one transaction:
--
-- 1. the subject's row lock (FOR UPDATE): it orders this against writers creating keys
--    (they hold it shared while they do: migration 0016) and against other requests;
-- 2. the subject's scheduled and in-progress erasures, all locked, the scheduled one
--    first: with no data written since the newest generation it covers, it is the
--    answer (created false); a scheduled one with data written since is extended to it
--    (its event row: p_extend_detail) and the subject's next generation starts;
-- 3. otherwise a new instruction, decided on the tenant's settings as the caller read
--    them (p_settings, compared with the row's: if they changed, nothing is written and
--    the row's settings come back for the caller to decide again): the rate brake
--    (p_limit; NULL: none) counts the tenant's erasures of the last hour under its
--    advisory lock (so a burst cannot overshoot it), not_before is the caller's for a
--    braked or an unbraked instruction, the subject's next generation starts, the row
--    and its event row are written. The caller wakes the executor once this has committed
--    if it is due now (vault/services/wakeups.py WakeupSender: a NOTIFY in here made
--    every request's commit queue on PostgreSQL's one-at-a-time NOTIFY commit lock).
--
-- Every rule stays in the vault's domain code (vault/domain), which the caller applies
-- to the settings it passes: the settings document's reading (TenantSettings), the
-- deadline (due_at), when an erasure may run (erasure_not_before: grace period, brake,
-- clamp before the deadline), the journal's texts; the state machine's checks on the
-- two transitions are made there before the call. Like the other request functions
-- (migration 0011) it sets role and tenant for its own transaction and checks the API
-- key's liveness where the vault recognised the key from memory (p_key; NULL: checked).
-- A concurrent request that inserted the subject's scheduled erasure first makes the
-- insert fail on erasures_one_scheduled: the caller starts again and finds it.
CREATE FUNCTION dv_erasure_request(
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
            RETURN QUERY
            SELECT false, e, ARRAY(SELECT i FROM erasure_items i
                                    WHERE i.tenant_id = p_tenant AND i.erasure_id = e.id
                                    ORDER BY i.category, i.key_id), NULL::jsonb
              FROM erasures e WHERE e.tenant_id = p_tenant AND e.id = v_answer.id;
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
    RETURN QUERY SELECT true, v_row, '{}'::erasure_items[], NULL::jsonb;
END
$$;

REVOKE ALL ON FUNCTION dv_erasure_request(uuid, uuid, bytea, uuid, text, text, uuid,
    timestamptz, timestamptz, jsonb, integer, timestamptz, timestamptz, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_erasure_request(uuid, uuid, bytea, uuid, text, text, uuid,
    timestamptz, timestamptz, jsonb, integer, timestamptz, timestamptz, text, text) TO datavault_app;
