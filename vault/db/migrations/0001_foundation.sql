-- Foundation: tenants, tenant KEKs, API keys, deployment secrets, the access log.
--
-- Roles: the role running migrations owns every table. Requests run as datavault_app,
-- which is not the owner and has no BYPASSRLS; every tenant-owned table forces row-level
-- security with policies that fail closed when datavault.tenant_id is unset (NULL never
-- equals anything). datavault_definer owns the few SECURITY DEFINER functions that must
-- look across tenants (API-key lookup, tenant directory) and can only read what they read.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datavault_app') THEN
        CREATE ROLE datavault_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datavault_definer') THEN
        CREATE ROLE datavault_definer NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    -- A non-superuser owner must be able to SET ROLE to both.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT datavault_app, datavault_definer TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO datavault_app, datavault_definer;

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closing', 'closed')),
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The tenant key-encryption key, versioned. wrapped_key is NULL once destroyed; the row
-- keeps only metadata.
CREATE TABLE tenant_keks (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    version      integer NOT NULL CHECK (version >= 1),
    wrapped_key  bytea,
    root_epoch   integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    PRIMARY KEY (tenant_id, version),
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);

-- The per-tenant key that pseudonymises subject references (HMAC-SHA256). It never
-- rotates (the hashes must stay comparable), is wrapped by the root key, and is destroyed
-- with the tenant.
CREATE TABLE tenant_hmac_keys (
    tenant_id    uuid PRIMARY KEY REFERENCES tenants (id),
    wrapped_key  bytea,
    root_epoch   integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL))
);

CREATE TABLE api_keys (
    id             uuid PRIMARY KEY,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    prefix         text NOT NULL UNIQUE,
    name           text NOT NULL,
    key_hash       bytea NOT NULL UNIQUE,
    scopes         text[] NOT NULL,
    allowed_cidrs  cidr[] NOT NULL DEFAULT '{}',
    bring_your_own boolean NOT NULL DEFAULT false,
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     uuid,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    last_used_ip   inet
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at);

-- Deployment-wide secrets (API-key pepper, access-log IP key), wrapped by the root key.
CREATE TABLE deployment_secrets (
    name        text PRIMARY KEY,
    wrapped     bytea NOT NULL,
    root_epoch  integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One hash chain per tenant; tenant_id 00000000-0000-0000-0000-000000000000 is the
-- deployment-wide chain for requests that belong to no tenant (failed authentication,
-- operations endpoints). The chain covers ip_hash, not ip, so ip can be truncated later.
CREATE TABLE access_log (
    tenant_id        uuid NOT NULL,
    seq              bigint NOT NULL,
    at               timestamptz NOT NULL,
    request_id       text NOT NULL,
    api_key_id       uuid,
    key_prefix       text,
    ip               inet,
    ip_hash          bytea NOT NULL,
    method           text NOT NULL,
    route            text NOT NULL,
    status           integer NOT NULL,
    bytes_in         bigint NOT NULL DEFAULT 0,
    bytes_out        bigint NOT NULL DEFAULT 0,
    subject_ref_hash bytea,
    artefact_id      uuid,
    prev_hash        bytea NOT NULL,
    row_hash         bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX access_log_at ON access_log (tenant_id, at DESC);
CREATE INDEX access_log_key ON access_log (tenant_id, api_key_id, at DESC);

CREATE TABLE access_log_heads (
    tenant_id   uuid PRIMARY KEY,
    seq         bigint NOT NULL,
    row_hash    bytea NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Row-level security on every tenant-owned table.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants TO datavault_app
    USING (id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE tenant_keks ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_keks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_keks TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE tenant_hmac_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_hmac_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_hmac_keys TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE access_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_log FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON access_log TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE access_log_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_log_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON access_log_heads TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

-- The definer reads keys and the tenant directory across tenants, nothing else.
CREATE POLICY definer_lookup ON api_keys FOR SELECT TO datavault_definer USING (true);
CREATE POLICY definer_lookup ON tenants FOR SELECT TO datavault_definer USING (true);

-- Privileges: the access log is append-only for the application.
GRANT SELECT, INSERT, UPDATE ON tenants, tenant_keks, tenant_hmac_keys, api_keys, access_log_heads
    TO datavault_app;
GRANT SELECT, INSERT ON access_log, deployment_secrets TO datavault_app;
GRANT SELECT ON api_keys, tenants TO datavault_definer;

-- The only cross-tenant reads. Pinned search_path, schema-qualified names.
CREATE FUNCTION dv_find_api_key(p_key_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid, prefix text, key_hash bytea, scopes text[],
               allowed_cidrs cidr[], expires_at timestamptz, revoked_at timestamptz,
               tenant_status text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT k.id, k.tenant_id, k.prefix, k.key_hash, k.scopes, k.allowed_cidrs,
           k.expires_at, k.revoked_at, t.status
      FROM public.api_keys k JOIN public.tenants t ON t.id = k.tenant_id
     WHERE k.key_hash = p_key_hash
$$;

CREATE FUNCTION dv_tenant_directory()
RETURNS TABLE (id uuid, slug text, status text, created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id, t.slug, t.status, t.created_at FROM public.tenants t ORDER BY t.created_at
$$;

GRANT CREATE ON SCHEMA public TO datavault_definer;
ALTER FUNCTION dv_find_api_key(bytea) OWNER TO datavault_definer;
ALTER FUNCTION dv_tenant_directory() OWNER TO datavault_definer;
REVOKE CREATE ON SCHEMA public FROM datavault_definer;
REVOKE ALL ON FUNCTION dv_find_api_key(bytea), dv_tenant_directory() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_find_api_key(bytea), dv_tenant_directory() TO datavault_app;
