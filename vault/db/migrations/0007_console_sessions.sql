-- Web console sessions (vault/console). The cookie holds a random token; the database
-- holds only its SHA-256, so a copy of this table opens no session. The API key's secret
-- is never stored: a session names the key, and the key's own state (revoked, expired,
-- allowed CIDRs, tenant closed) is checked on every request.
CREATE TABLE console_sessions (
    token_hash   bytea PRIMARY KEY,
    id           uuid NOT NULL UNIQUE,
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    api_key_id   uuid NOT NULL REFERENCES api_keys (id),
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_tenant ON console_sessions (tenant_id, last_seen_at);

-- The last access-log chain verification run from the console, per tenant.
CREATE TABLE console_chain_checks (
    tenant_id     uuid PRIMARY KEY REFERENCES tenants (id),
    checked_at    timestamptz NOT NULL,
    checked_by    uuid NOT NULL,
    rows_checked  bigint NOT NULL,
    ok            boolean NOT NULL,
    first_bad_seq bigint,
    problem       text
);

ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON console_sessions TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
ALTER TABLE console_chain_checks ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_chain_checks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON console_chain_checks TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON console_sessions, console_chain_checks TO datavault_app;

-- The one cross-tenant read the console needs: a session by its token hash, before the
-- tenant is known, with the state of the key it was opened with. Like dv_find_api_key.
CREATE POLICY definer_lookup ON console_sessions FOR SELECT TO datavault_definer USING (true);
GRANT SELECT ON console_sessions TO datavault_definer;

CREATE FUNCTION dv_find_console_session(p_token_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, api_key_id uuid, prefix text, scopes text[],
               created_at timestamptz, last_seen_at timestamptz, allowed_cidrs cidr[],
               key_expires_at timestamptz, key_revoked_at timestamptz, tenant_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.id, s.tenant_id, s.api_key_id, k.prefix, s.scopes, s.created_at,
           s.last_seen_at, k.allowed_cidrs, k.expires_at, k.revoked_at, t.status
      FROM public.console_sessions s
      JOIN public.api_keys k ON k.id = s.api_key_id AND k.tenant_id = s.tenant_id
      JOIN public.tenants t ON t.id = s.tenant_id
     WHERE s.token_hash = p_token_hash
$$;

GRANT CREATE ON SCHEMA public TO datavault_definer;
ALTER FUNCTION dv_find_console_session(bytea) OWNER TO datavault_definer;
REVOKE CREATE ON SCHEMA public FROM datavault_definer;
REVOKE ALL ON FUNCTION dv_find_console_session(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_find_console_session(bytea) TO datavault_app;
