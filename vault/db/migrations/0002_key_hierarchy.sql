-- Key hierarchy below the tenant KEK: subjects, subject keys, data keys; root key epochs.
--
-- Destroying a key sets wrapped_key to NULL (and destroyed_at) in the same transaction
-- as the state change that calls for it; the row keeps only metadata. The CHECK makes a
-- half-destroyed row impossible.

CREATE TABLE subjects (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    -- HMAC-SHA256 of the NFC reference under the tenant's HMAC key (pseudonymous).
    ref_hash     bytea NOT NULL,
    -- The generation new writes go to; an erasure request starts the next one.
    generation   integer NOT NULL DEFAULT 1 CHECK (generation >= 1),
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, ref_hash)
);

CREATE TABLE subject_keys (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    subject_id   uuid NOT NULL,
    category     text NOT NULL CHECK (category ~ '^[a-z][a-z0-9_-]{0,62}$'),
    generation   integer NOT NULL CHECK (generation >= 1),
    kek_version  integer NOT NULL,
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, subject_id, category, generation),
    FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects (tenant_id, id),
    FOREIGN KEY (tenant_id, kek_version) REFERENCES tenant_keks (tenant_id, version),
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
-- Rotation finds the keys still under an old KEK version.
CREATE INDEX subject_keys_kek ON subject_keys (tenant_id, kek_version) WHERE wrapped_key IS NOT NULL;

CREATE TABLE data_keys (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    subject_key_id uuid NOT NULL,
    purpose        text NOT NULL CHECK (purpose IN ('artefact', 'record')),
    wrapped_key    bytea,
    created_at     timestamptz NOT NULL DEFAULT now(),
    destroyed_at   timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subject_key_id) REFERENCES subject_keys (tenant_id, id),
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);
CREATE INDEX data_keys_subject_key ON data_keys (tenant_id, subject_key_id);

-- Root key epochs (numbered from 1 = the first root key). Deployment-wide, no tenant.
CREATE TABLE root_epochs (
    epoch       integer PRIMARY KEY CHECK (epoch >= 1),
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    retired_at  timestamptz
);
INSERT INTO root_epochs (epoch) VALUES (1);

ALTER TABLE subjects ENABLE ROW LEVEL SECURITY;
ALTER TABLE subjects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subjects TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE subject_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE subject_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subject_keys TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE data_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE data_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON data_keys TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON subjects, subject_keys, data_keys TO datavault_app;
GRANT SELECT, INSERT, UPDATE ON root_epochs TO datavault_app;
-- Rotation rewraps deployment secrets under a new root epoch.
GRANT UPDATE ON deployment_secrets TO datavault_app;
