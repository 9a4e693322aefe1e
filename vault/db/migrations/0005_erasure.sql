-- Erasure instructions, the shred ledger's outbox, and the receipt signing keys.
--
-- An erasure is a state machine (scheduled → in_progress → completed | held, or
-- cancelled before not_before) with a row per transition in erasure_events. Its shred
-- commits the destroyed keys and their ledger outbox entries in one transaction; it is
-- `completed` only once those entries are published to the blob store (outside
-- PostgreSQL).

CREATE TABLE erasures (
    tenant_id        uuid NOT NULL REFERENCES tenants (id),
    id               uuid NOT NULL,
    subject_ref_hash bytea NOT NULL,
    subject_id       uuid,
    -- The generation the instruction covers; data written after it is a new life.
    generation       integer,
    status           text NOT NULL CHECK (status IN ('scheduled', 'in_progress', 'completed',
                         'held', 'cancelled')),
    reason           text,
    reference        text,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    requested_by     uuid NOT NULL,
    not_before       timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    braked           boolean NOT NULL DEFAULT false,
    shredded_at      timestamptz,
    completed_at     timestamptz,
    cancelled_at     timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- One open instruction per subject: repeating the request returns it.
CREATE UNIQUE INDEX erasures_one_open ON erasures (tenant_id, subject_ref_hash)
    WHERE status IN ('scheduled', 'in_progress', 'held');
CREATE INDEX erasures_due ON erasures (tenant_id, not_before) WHERE status = 'scheduled';
CREATE INDEX erasures_listing ON erasures (tenant_id, requested_at DESC, id DESC);

-- What an erasure did per key: shredded, or kept (by holds; by statutory retention).
CREATE TABLE erasure_items (
    tenant_id     uuid NOT NULL,
    erasure_id    uuid NOT NULL,
    key_id        uuid NOT NULL,
    category      text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('shredded', 'held', 'retained')),
    destroyed_at  timestamptz,
    hold_ids      uuid[],
    kept_until    timestamptz,
    PRIMARY KEY (tenant_id, erasure_id, key_id),
    FOREIGN KEY (tenant_id, erasure_id) REFERENCES erasures (tenant_id, id)
);

CREATE TABLE erasure_events (
    tenant_id   uuid NOT NULL,
    erasure_id  uuid NOT NULL,
    seq         bigserial,
    at          timestamptz NOT NULL DEFAULT now(),
    from_status text,
    to_status   text NOT NULL,
    api_key_id  uuid,
    detail      text,
    PRIMARY KEY (tenant_id, erasure_id, seq),
    FOREIGN KEY (tenant_id, erasure_id) REFERENCES erasures (tenant_id, id)
);

-- Shred-ledger outbox: written in the shred's transaction, published by a worker.
CREATE TABLE ledger_outbox (
    tenant_id    uuid NOT NULL,
    id           bigserial,
    key_kind     text NOT NULL CHECK (key_kind IN ('subject', 'data', 'kek', 'hmac')),
    key_id       text NOT NULL,
    erasure_id   uuid,
    destroyed_at timestamptz NOT NULL,
    published_at timestamptz,
    ledger_seq   bigint,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ledger_outbox_pending ON ledger_outbox (tenant_id, id) WHERE published_at IS NULL;

-- The last ledger entry the database saw (deployment-wide): the vault refuses to start
-- when the ledger in the blob store is shorter.
CREATE TABLE ledger_head (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    seq         bigint NOT NULL,
    entry_hash  bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Ed25519 receipt signing keys: the private key wrapped by the root key; retired public
-- keys stay published so old receipts still verify.
CREATE TABLE receipt_keys (
    kid             text PRIMARY KEY,
    public_key      bytea NOT NULL,
    private_wrapped bytea,
    root_epoch      integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    retired_at      timestamptz
);

CREATE TABLE erasure_receipts (
    tenant_id   uuid NOT NULL,
    erasure_id  uuid NOT NULL,
    final       boolean NOT NULL,
    document    jsonb NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, erasure_id, final),
    FOREIGN KEY (tenant_id, erasure_id) REFERENCES erasures (tenant_id, id)
);

ALTER TABLE erasures ENABLE ROW LEVEL SECURITY;
ALTER TABLE erasures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON erasures TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
ALTER TABLE erasure_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE erasure_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON erasure_items TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
ALTER TABLE erasure_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE erasure_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON erasure_events TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
ALTER TABLE ledger_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ledger_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON ledger_outbox TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
ALTER TABLE erasure_receipts ENABLE ROW LEVEL SECURITY;
ALTER TABLE erasure_receipts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON erasure_receipts TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON erasures, erasure_items, ledger_outbox, erasure_receipts
    TO datavault_app;
GRANT SELECT, INSERT ON erasure_events TO datavault_app;
GRANT USAGE ON SEQUENCE erasure_events_seq_seq, ledger_outbox_id_seq TO datavault_app;
GRANT SELECT, INSERT, UPDATE ON ledger_head, receipt_keys TO datavault_app;
