-- Which data keys running transfers hold (DESIGN.md, Deletion guarantees: "Completed"
-- means, among other things, that no process holds the key any more; receipts are issued
-- only then). A download, range read, export entry, playback stream or upload writes a
-- row for its data key before it decrypts anything (dv_transfer_hold, below: only while
-- the key is live) or in the transaction that creates it (an upload); its watchdog
-- renews `held_until` on every confirmation (vault/services/transfers.py) and the row is
-- deleted when the transfer ends or is cut. An erasure completes only once no unexpired
-- row holds a key it shredded (erasures.sql `awaiting_ledger`).
--
-- `held_until` is the longest the process can still hold the key without confirming it
-- again: the watchdog cuts a transfer it could not confirm for 50 s, and 10 s are left
-- for the cut. A process that died, or lost the database, holds nothing after it: the
-- row is ignored by the clock and removed by the sweeper.
CREATE TABLE transfer_keys (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    transfer_id uuid NOT NULL,
    data_key_id uuid NOT NULL,
    held_until  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, transfer_id, data_key_id)
);
-- Completion's question: does a live transfer hold this key?
CREATE INDEX transfer_keys_by_key ON transfer_keys (tenant_id, data_key_id, held_until);

ALTER TABLE transfer_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE transfer_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON transfer_keys TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE, DELETE ON transfer_keys TO datavault_app;

-- A transfer ($2) holds data key $3 for $4 seconds, in one round trip (a request function
-- like those of migration 0011: it sets role and tenant itself). Only while the key and
-- every key above it are live: false means destroyed, and the transfer must not start.
-- Either this commits before an erasure's shred does (its completion then sees the row)
-- or the shred committed first and this finds the key gone.
CREATE FUNCTION dv_transfer_hold(p_tenant uuid, p_transfer uuid, p_data_key uuid,
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
    ON CONFLICT (tenant_id, transfer_id, data_key_id)
       DO UPDATE SET held_until = EXCLUDED.held_until;
    RETURN FOUND;
END
$$;

-- The transfer ended or was cut, its streams closed: it holds no key any more. Committed
-- without waiting for the WAL flush (visible to others at once all the same): a release
-- lost in a database crash only leaves rows that expire by the clock, so every download
-- need not wait for a disk flush at its end.
CREATE FUNCTION dv_transfer_release(p_tenant uuid, p_transfer uuid) RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
    PERFORM set_config('role', 'datavault_app', true),
            set_config('datavault.tenant_id', p_tenant::text, true),
            set_config('synchronous_commit', 'off', true);
    DELETE FROM transfer_keys WHERE tenant_id = p_tenant AND transfer_id = p_transfer;
END
$$;

REVOKE ALL ON FUNCTION dv_transfer_hold(uuid, uuid, uuid, double precision) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_transfer_hold(uuid, uuid, uuid, double precision) TO datavault_app;
REVOKE ALL ON FUNCTION dv_transfer_release(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_transfer_release(uuid, uuid) TO datavault_app;
