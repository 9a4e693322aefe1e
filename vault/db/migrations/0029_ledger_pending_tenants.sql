-- The shred-ledger publisher opened a transaction in every tenant to look for pending
-- outbox rows, each round: O(tenants) round trips on every erasure's way to `completed`
-- and on every hold change (which publishes before it answers). It now asks which tenants
-- have pending rows, a cross-tenant read of tenant ids only, like the tenant directory.
CREATE POLICY definer_pending ON ledger_outbox FOR SELECT TO datavault_definer
    USING (published_at IS NULL);
GRANT SELECT (tenant_id, published_at) ON ledger_outbox TO datavault_definer;

CREATE FUNCTION dv_ledger_pending_tenants()
RETURNS TABLE (id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.id FROM public.tenants t
     WHERE EXISTS (SELECT FROM public.ledger_outbox o
                    WHERE o.tenant_id = t.id AND o.published_at IS NULL)
     ORDER BY t.created_at
$$;

GRANT CREATE ON SCHEMA public TO datavault_definer;
ALTER FUNCTION dv_ledger_pending_tenants() OWNER TO datavault_definer;
REVOKE CREATE ON SCHEMA public FROM datavault_definer;
REVOKE ALL ON FUNCTION dv_ledger_pending_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION dv_ledger_pending_tenants() TO datavault_app;
