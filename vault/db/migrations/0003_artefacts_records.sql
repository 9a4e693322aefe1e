-- Artefacts (large streamed objects) and records (small JSON values), per subject.
--
-- Content-describing metadata (filename, sha256, crc32 of the plaintext) is sealed with
-- the object's data key, so shredding the key makes it unreadable too. What stays in the
-- clear is what the vault needs to serve and account: category, content type, sizes.

ALTER TABLE subjects
    -- The reference itself, sealed with a data key under the subject's "identity" key of
    -- the current generation: erasure destroys it with the rest.
    ADD COLUMN ref_sealed      bytea,
    ADD COLUMN ref_data_key_id uuid,
    ADD COLUMN restricted_at   timestamptz,
    ADD COLUMN restriction_reason_sealed bytea;

CREATE TABLE artefacts (
    tenant_id        uuid NOT NULL,
    id               uuid NOT NULL,
    subject_id       uuid NOT NULL,
    category         text NOT NULL,
    generation       integer NOT NULL,
    data_key_id      uuid NOT NULL,
    blob_key         text NOT NULL,
    -- uploading → active → deleted; failed uploads go straight to deleted.
    state            text NOT NULL CHECK (state IN ('uploading', 'active', 'deleted')),
    content_type     text NOT NULL,
    size             bigint,
    segment_size     integer NOT NULL,
    metadata_sealed  bytea,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz,
    deleted_at       timestamptz,
    blob_removed_at  timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects (tenant_id, id),
    FOREIGN KEY (tenant_id, data_key_id) REFERENCES data_keys (tenant_id, id)
);
CREATE INDEX artefacts_subject ON artefacts (tenant_id, subject_id, created_at DESC, id DESC)
    WHERE state = 'active';
-- The sweeper's work: blobs of deleted artefacts, and uploads that never finished.
CREATE INDEX artefacts_cleanup ON artefacts (tenant_id, created_at)
    WHERE (state = 'deleted' AND blob_removed_at IS NULL) OR state = 'uploading';

CREATE TABLE records (
    tenant_id     uuid NOT NULL,
    subject_id    uuid NOT NULL,
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,200}$'),
    version       integer NOT NULL CHECK (version >= 1),
    category      text NOT NULL,
    generation    integer NOT NULL,
    data_key_id   uuid NOT NULL,
    -- NULL once the version is shredded (replaced, deleted, erased).
    value_sealed  bytea,
    size          integer NOT NULL,
    current       boolean NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    superseded_at timestamptz,
    PRIMARY KEY (tenant_id, subject_id, name, version),
    FOREIGN KEY (tenant_id, subject_id) REFERENCES subjects (tenant_id, id),
    FOREIGN KEY (tenant_id, data_key_id) REFERENCES data_keys (tenant_id, id)
);
CREATE UNIQUE INDEX records_current ON records (tenant_id, subject_id, name) WHERE current;

ALTER TABLE artefacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE artefacts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON artefacts TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE records ENABLE ROW LEVEL SECURITY;
ALTER TABLE records FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON records TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON artefacts, records TO datavault_app;
