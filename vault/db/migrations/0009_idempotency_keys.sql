-- Idempotency-Key (API.md Conventions): the first answer to a creating request, kept 24
-- hours per API key. Nothing here is readable without the API key's secret, which the
-- vault does not store: the Idempotency-Key and the request appear only as HMACs, the
-- answer only sealed (crypto/replay.py). `status` is NULL while the first request runs.
CREATE TABLE idempotency_keys (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    api_key_id     uuid NOT NULL,
    key_id         bytea NOT NULL,
    fingerprint    bytea NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    status         integer,
    answer_sealed  bytea,
    PRIMARY KEY (tenant_id, api_key_id, key_id)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (tenant_id, created_at);

ALTER TABLE idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON idempotency_keys TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO datavault_app;
