-- An erasure's shred-ledger rows found by index (red team 13): completion counts them at
-- its look before the barrier and again after it, so that an erasure that gained a row in
-- between (the start-up reconcile re-destroying keys a restored backup brought back)
-- waits for the next pass. Without an index each count read the tenant's whole outbox,
-- once per ready erasure per pass: quadratic in a burst.
CREATE INDEX ledger_outbox_by_erasure ON ledger_outbox (tenant_id, erasure_id)
    WHERE erasure_id IS NOT NULL;
