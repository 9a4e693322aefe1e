-- Four more instruction entries in the shred ledger (vault/services/ledger_standing.py),
-- found by the fourth review: without them a restored backup undoes a restriction of
-- processing ('restriction': placed or lifted), a retention policy changed
-- ('retention'), a console sign-out ('console_session') and a deleted webhook endpoint
-- ('webhook'). Each is recorded in the transaction that makes the change and replayed on
-- start after the database's ledger head.
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_key_kind_check;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_key_kind_check
    CHECK (key_kind IN ('subject', 'data', 'kek', 'hmac', 'erasure', 'hold',
                        'erasure_request', 'api_key', 'closure', 'restriction',
                        'retention', 'console_session', 'webhook'));
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_fact_of_instructions;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_fact_of_instructions
    CHECK ((fact IS NOT NULL) = (key_kind IN ('erasure', 'hold', 'erasure_request',
                                              'api_key', 'closure', 'restriction',
                                              'retention', 'console_session', 'webhook')));
