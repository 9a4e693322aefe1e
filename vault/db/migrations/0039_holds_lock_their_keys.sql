-- An answer's hold on its keys (dv_transfer_hold, migration 0026, under every content,
-- record and metadata read; dv_transfer_hold_keys, migration 0038, for pages) checked the
-- keys live in its statement's snapshot, and its row became visible to an erasure's
-- completion only at its commit. Nothing made a shred wait for it: an erasure could shred
-- and complete between the two, and the answer was decrypted and delivered after
-- `completed` (the eighth review, tests/e2e/test_redteam8_hold_snapshot_race.py).
--
-- The hold now share-locks the data key's and the subject key's rows it reads. A shred
-- (an UPDATE of those rows) in progress makes the hold wait for it and then see the key
-- gone (READ COMMITTED re-checks a locked row's newest version); a shred that comes after
-- waits for the hold's transaction, so its completion sees the hold's row. Either the
-- hold commits before the shred does or it finds the key destroyed, as 0026 intended.
CREATE OR REPLACE FUNCTION dv_transfer_hold(p_tenant uuid, p_transfer uuid, p_data_key uuid,
                                            p_seconds double precision)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true);
    INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)
    SELECT p_tenant, p_transfer, p_data_key, now() + make_interval(secs => p_seconds)
      FROM data_keys d
      JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
      JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
     WHERE d.tenant_id = p_tenant AND d.id = p_data_key
       AND d.wrapped_key IS NOT NULL AND s.wrapped_key IS NOT NULL
       AND k.wrapped_key IS NOT NULL
       FOR SHARE OF d, s
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
           AND k.wrapped_key IS NOT NULL
           FOR SHARE OF d, s),
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
