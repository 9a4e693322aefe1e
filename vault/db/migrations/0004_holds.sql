-- Legal holds and their journal.
--
-- A hold covers a subject (by the keyed hash of its reference, so a hold can name a
-- subject the vault has not seen yet) or the whole tenant (subject_ref_hash NULL), and
-- all categories (categories NULL) or a list. While an active hold covers a key, nothing
-- destroys it.

CREATE TABLE holds (
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    id                   uuid NOT NULL,
    subject_ref_hash     bytea,
    categories           text[],
    reason               text NOT NULL CHECK (reason IN ('billing', 'fraud_investigation',
                             'litigation', 'law_enforcement', 'regulatory')),
    reference            text NOT NULL,
    note                 text,
    placed_at            timestamptz NOT NULL DEFAULT now(),
    placed_by            uuid NOT NULL,
    expires_at           timestamptz,
    release_requested_by uuid,
    release_requested_at timestamptz,
    released_at          timestamptz,
    released_by          uuid,
    expired_at           timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX holds_active ON holds (tenant_id, subject_ref_hash) WHERE released_at IS NULL;

-- Who did what to a hold, when, from where and why. Append-only for the application.
CREATE TABLE hold_events (
    tenant_id   uuid NOT NULL,
    hold_id     uuid NOT NULL,
    seq         bigserial,
    at          timestamptz NOT NULL DEFAULT now(),
    action      text NOT NULL CHECK (action IN ('placed', 'extended', 'annotated',
                    'release_requested', 'released', 'expired')),
    api_key_id  uuid,
    ip          inet,
    reason      text,
    PRIMARY KEY (tenant_id, hold_id, seq),
    FOREIGN KEY (tenant_id, hold_id) REFERENCES holds (tenant_id, id)
);

ALTER TABLE holds ENABLE ROW LEVEL SECURITY;
ALTER TABLE holds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON holds TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE hold_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE hold_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON hold_events TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON holds TO datavault_app;
GRANT SELECT, INSERT ON hold_events TO datavault_app;
GRANT USAGE ON SEQUENCE hold_events_seq_seq TO datavault_app;
