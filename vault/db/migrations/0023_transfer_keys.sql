-- Which data keys running transfers hold (DESIGN.md, Deletion guarantees: "Completed"
-- means, among other things, that no process holds the key any more; receipts are issued
-- only then). A download, range read, export entry, playback stream or upload writes a
-- row for its data key in the transaction that reads (or creates) the key; its watchdog
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
