-- Every answer that carries data decrypted with a subject's key is a transfer, not only
-- content and record values: an artefact's metadata (its filename, in JSON or in a
-- Content-Disposition header), a listing of a subject's artefacts, a disclosure's
-- description and its subject's reference, a listing of disclosures across subjects.
-- Such an answer is one message written after its access-log row commits, and a client
-- that stops reading kept it waiting in the vault with no hold on its keys: it arrived
-- after the subject's erasure had completed.
--
-- Transfer $2 holds every data key of $3 that is live (the key and every key above it,
-- as dv_transfer_hold, migration 0026) for $4 seconds, in one statement however many
-- keys the answer needs (a page of 500 artefacts is 500 keys), and returns the held
-- keys' rows with the columns of keys.sql `data_key_by_id`, read in the same snapshot:
-- the vault unwraps only what this returns, so a key shredded before the hold is not
-- decrypted, and one shredded after it is held off until the answer has left (the
-- erasure's completion waits for the row, or the transfer's watchdog cuts the answer).
-- $5 false (an answer sent as one message) commits without waiting for the WAL flush:
-- the answer waits for its access-log row's commit, which flushes it and confirms it
-- (dv_access_log_chain_holding, migration 0035). A request function: it sets role and
-- tenant itself (migration 0011).
CREATE FUNCTION dv_transfer_hold_keys(p_tenant uuid, p_transfer uuid, p_data_keys uuid[],
                                      p_seconds double precision, p_flush boolean)
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

REVOKE ALL ON FUNCTION dv_transfer_hold_keys(uuid, uuid, uuid[], double precision, boolean)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_transfer_hold_keys(uuid, uuid, uuid[], double precision, boolean)
    TO datavault_app;
