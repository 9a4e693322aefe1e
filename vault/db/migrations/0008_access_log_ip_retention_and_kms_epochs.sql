-- Access-log IP retention (DESIGN.md, Access log): full IPs for a while, then truncated
-- (/24, /48), then dropped. The application role stays append-only on access_log; the
-- one change it may cause goes through dv_age_access_log_ips, a SECURITY DEFINER
-- function owned by datavault_ip_retention, a role that can read the age of rows and
-- write their ip column, nothing else. The chain covers HMAC(ip key, IP), not ip, so
-- aged rows still verify.
--
-- Root-key epochs with aws-kms: root_epochs records which KMS key each epoch used, so
-- `keys retire-epoch` knows which key to schedule for deletion.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'datavault_ip_retention') THEN
        CREATE ROLE datavault_ip_retention NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB
            NOCREATEROLE;
    END IF;
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT datavault_ip_retention TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO datavault_ip_retention;
GRANT SELECT (tenant_id, seq, at, ip), UPDATE (ip) ON access_log TO datavault_ip_retention;
-- Every chain at once (the deployment chain included): ip is all this role can touch.
CREATE POLICY ip_retention_read ON access_log FOR SELECT TO datavault_ip_retention
    USING (true);
CREATE POLICY ip_retention_update ON access_log FOR UPDATE TO datavault_ip_retention
    USING (true) WITH CHECK (true);

-- Rows that still carry an IP, oldest first: what the ager scans.
CREATE INDEX access_log_ip_age ON access_log (at) WHERE ip IS NOT NULL;

-- Truncate full IPs of rows older than p_full_before to /24 (IPv4) or /48 (IPv6), and
-- drop the IPs of rows older than p_drop_before; at most p_limit rows of each kind.
-- Returns (truncated, dropped). It can only lower an IP's precision, never raise it or
-- touch another column; cut-offs in the future are refused.
CREATE FUNCTION dv_age_access_log_ips(p_full_before timestamptz, p_drop_before timestamptz,
                                      p_limit integer)
RETURNS TABLE (truncated integer, dropped integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_truncated integer;
    v_dropped integer;
BEGIN
    IF p_full_before > now() OR p_drop_before > p_full_before OR p_limit < 1 THEN
        RAISE EXCEPTION 'invalid access-log IP retention cut-offs' USING ERRCODE = '22023';
    END IF;
    WITH due AS (
        SELECT l.tenant_id, l.seq FROM public.access_log l
         WHERE l.ip IS NOT NULL AND l.at < p_drop_before
         ORDER BY l.at LIMIT p_limit FOR UPDATE SKIP LOCKED
    )
    UPDATE public.access_log l SET ip = NULL
      FROM due WHERE l.tenant_id = due.tenant_id AND l.seq = due.seq;
    GET DIAGNOSTICS v_dropped = ROW_COUNT;
    WITH due AS (
        SELECT l.tenant_id, l.seq FROM public.access_log l
         WHERE l.ip IS NOT NULL AND l.at < p_full_before AND l.at >= p_drop_before
           AND masklen(l.ip) > CASE family(l.ip) WHEN 4 THEN 24 ELSE 48 END
         ORDER BY l.at LIMIT p_limit FOR UPDATE SKIP LOCKED
    )
    UPDATE public.access_log l
       SET ip = network(set_masklen(l.ip, CASE family(l.ip) WHEN 4 THEN 24 ELSE 48 END))::inet
      FROM due WHERE l.tenant_id = due.tenant_id AND l.seq = due.seq;
    GET DIAGNOSTICS v_truncated = ROW_COUNT;
    RETURN QUERY SELECT v_truncated, v_dropped;
END
$$;

GRANT CREATE ON SCHEMA public TO datavault_ip_retention;
ALTER FUNCTION dv_age_access_log_ips(timestamptz, timestamptz, integer)
    OWNER TO datavault_ip_retention;
REVOKE CREATE ON SCHEMA public FROM datavault_ip_retention;
REVOKE ALL ON FUNCTION dv_age_access_log_ips(timestamptz, timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_age_access_log_ips(timestamptz, timestamptz, integer)
    TO datavault_app;

ALTER TABLE root_epochs ADD COLUMN kms_key_id text;
