-- Instruction entries in the shred ledger: what a restored backup must not forget besides
-- the keys it destroyed. An erasure that ran (its generation range and what it kept and
-- why) and every change to a legal hold (placed, expiry moved, released) go out through
-- the same outbox, in the transaction that makes them, and are published into the same
-- hash chain; start-up replays those after the database's ledger head
-- (vault/services/ledger_instructions.py). `fact` is the instruction (never a subject
-- reference: the pseudonymous hash only); `key_id` names the erasure or hold, and
-- `destroyed_at` is when the fact was recorded (compaction folds it by the same rule as
-- a destroyed key).
ALTER TABLE ledger_outbox DROP CONSTRAINT ledger_outbox_key_kind_check;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_key_kind_check
    CHECK (key_kind IN ('subject', 'data', 'kek', 'hmac', 'erasure', 'hold'));
ALTER TABLE ledger_outbox ADD COLUMN fact jsonb;
ALTER TABLE ledger_outbox ADD CONSTRAINT ledger_outbox_fact_of_instructions
    CHECK ((fact IS NOT NULL) = (key_kind IN ('erasure', 'hold')));
