-- More instruction entries in the shred ledger (vault/services/ledger_controls.py): a
-- restore may never loosen a control, so what tightens one is recorded as well, in the
-- transaction that makes it, and replayed on start after the database's ledger head:
-- an erasure's state before it shreds ('erasure_request': scheduled, extended,
-- cancelled), an API key's revocation ('api_key') and a tenant's closure requested or
-- cancelled ('closure'). A hold's entries (migration 0025) now also carry its pending
-- release request, so a withdrawn one does not come back.
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_key_kind_check;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_key_kind_check
    CHECK (key_kind IN ('subject', 'data', 'kek', 'hmac', 'erasure', 'hold',
                        'erasure_request', 'api_key', 'closure'));
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_fact_of_instructions;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_fact_of_instructions
    CHECK ((fact IS NOT NULL) = (key_kind IN ('erasure', 'hold', 'erasure_request',
                                              'api_key', 'closure')));
