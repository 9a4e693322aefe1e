-- Playback links (API.md "Playback links"): a URL that serves one artefact's content
-- without an Authorization header, for a browser's <video> or a download link. The token
-- in the URL is the credential. This table holds only its SHA-256 (the token is 256
-- random bits: a plain hash is enough, as for console sessions), never the token, and
-- nothing about the subject but what the artefact row already names.
--
-- A link is usable while it has not expired, the key that minted it is live, and the
-- artefact is readable with the read scope (not deleted, erased or restricted): all read
-- afresh on every use (vault/services/playback_links.py), never cached.
CREATE TABLE playback_links (
    token_hash  bytea PRIMARY KEY,
    id          uuid NOT NULL UNIQUE,
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    artefact_id uuid NOT NULL,
    minted_by   uuid NOT NULL REFERENCES api_keys (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    FOREIGN KEY (tenant_id, artefact_id) REFERENCES artefacts (tenant_id, id),
    -- API.md: at most 3,600 seconds.
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '3600 seconds')
);
-- The sweeper's work: links past their expiry.
CREATE INDEX playback_links_expiry ON playback_links (tenant_id, expires_at);

ALTER TABLE playback_links ENABLE ROW LEVEL SECURITY;
ALTER TABLE playback_links FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON playback_links TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);
-- Links are never changed: minted, then deleted once expired.
GRANT SELECT, INSERT, DELETE ON playback_links TO datavault_app;

-- The one cross-tenant read a link needs: its tenant, by the token's hash, before the
-- tenant is known (like dv_find_api_key and dv_find_console_session). It answers the
-- tenant and the link's id only; the link, the minting key's state, the artefact and the
-- subject are then read in that tenant's transaction, under row-level security.
CREATE POLICY definer_lookup ON playback_links FOR SELECT TO datavault_definer USING (true);
GRANT SELECT ON playback_links TO datavault_definer;

CREATE FUNCTION dv_find_playback_link(p_token_hash bytea)
RETURNS TABLE (id uuid, tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.id, l.tenant_id FROM public.playback_links l WHERE l.token_hash = p_token_hash
$$;

GRANT CREATE ON SCHEMA public TO datavault_definer;
ALTER FUNCTION dv_find_playback_link(bytea) OWNER TO datavault_definer;
REVOKE CREATE ON SCHEMA public FROM datavault_definer;
REVOKE ALL ON FUNCTION dv_find_playback_link(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_find_playback_link(bytea) TO datavault_app;
