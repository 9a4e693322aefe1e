-- Disclosures (API.md "Disclosures"): records that a subject's data was handed to a third
-- party (a court, the police, a tax authority).
--
-- Append-only and hash-chained per tenant like the access log: each row's row_hash is
-- vault/domain/disclosures.py `disclosure_hash` over every other column and the row
-- before it, computed by the vault under the head's row lock; `datavault audit verify`
-- recomputes it, and the head is carried in the tenant's access-log anchors (v4), so a
-- cut-off tail is found as well. The application may only insert (no UPDATE or DELETE
-- privilege), and a trigger refuses changes and deletions from anyone else too.
--
-- An entry outlives an erasure: it names the subject only by the keyed hash of its
-- reference (never the reference), and the description, which may say what was handed
-- over about the person, is sealed under the subject's identity data key (the one that
-- seals its reference copy, vault/services/subjects.py) when it is recorded, so the
-- erasure that shreds that key leaves it unreadable while the chain, which covers the
-- sealed bytes, still verifies.

CREATE TABLE disclosures (
    tenant_id                   uuid NOT NULL REFERENCES tenants (id),
    seq                         bigint NOT NULL,
    id                          uuid NOT NULL,
    recorded_at                 timestamptz NOT NULL,
    recorded_by                 uuid NOT NULL,
    request_id                  text NOT NULL,
    subject_ref_hash            bytea,
    subject_id                  uuid,
    hold_id                     uuid,
    recipient                   text NOT NULL,
    legal_basis                 text NOT NULL,
    reference                   text NOT NULL,
    categories                  text[] NOT NULL,
    description_sealed          bytea,
    description_key_id          uuid,
    disclosed_at                timestamptz NOT NULL,
    withhold_from_subject_until timestamptz,
    prev_hash                   bytea NOT NULL,
    row_hash                    bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq),
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, hold_id) REFERENCES holds (tenant_id, id),
    CHECK ((description_sealed IS NULL) = (description_key_id IS NULL))
);
-- Lists are newest disclosed first, for the tenant, a subject or a hold.
CREATE INDEX disclosures_by_time ON disclosures (tenant_id, disclosed_at DESC, id DESC);
CREATE INDEX disclosures_by_subject
    ON disclosures (tenant_id, subject_ref_hash, disclosed_at DESC, id DESC)
    WHERE subject_ref_hash IS NOT NULL;
CREATE INDEX disclosures_by_hold ON disclosures (tenant_id, hold_id) WHERE hold_id IS NOT NULL;

CREATE TABLE disclosure_heads (
    tenant_id  uuid PRIMARY KEY REFERENCES tenants (id),
    seq        bigint NOT NULL,
    row_hash   bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION dv_disclosures_append_only() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'disclosures are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER disclosures_append_only BEFORE UPDATE OR DELETE ON disclosures
    FOR EACH ROW EXECUTE FUNCTION dv_disclosures_append_only();
CREATE TRIGGER disclosures_no_truncate BEFORE TRUNCATE ON disclosures
    FOR EACH STATEMENT EXECUTE FUNCTION dv_disclosures_append_only();

ALTER TABLE disclosures ENABLE ROW LEVEL SECURITY;
ALTER TABLE disclosures FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON disclosures TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
ALTER TABLE disclosure_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE disclosure_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON disclosure_heads TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT ON disclosures TO datavault_app;
GRANT SELECT, INSERT, UPDATE ON disclosure_heads TO datavault_app;

-- The console's last chain verification also says how many disclosures it checked and
-- which one failed first.
ALTER TABLE console_chain_checks
    ADD COLUMN disclosures_checked bigint NOT NULL DEFAULT 0,
    ADD COLUMN first_bad_disclosure bigint;
