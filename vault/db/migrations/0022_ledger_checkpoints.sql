-- Shred-ledger compaction (vault/domain/ledger_folding.py, workers/ledger_compaction.py).
--
-- Each root-key epoch records the ledger head as it stood before the epoch's root key
-- existed. Every ledger object up to that head names keys destroyed before the epoch
-- began, so no copy of them was ever wrapped under it or a later epoch: once every older
-- epoch is retired, those objects may fold into a signed checkpoint. NULL: not known (an
-- epoch recorded by a process of an earlier release); nothing folds while that epoch is
-- the oldest one not retired.
ALTER TABLE root_epochs ADD COLUMN ledger_seq_at_start bigint
    CHECK (ledger_seq_at_start >= 0);

-- Epochs recorded before now: the newest ledger object whose rows were marked published
-- a minute before the epoch's row was written. Rows are marked after their object is
-- written (a restored database's reconciled rows even later), so that object and every
-- one before it was written before the epoch began; the minute covers the moment between
-- a new local root key and its row. No such row: 0, nothing folds under that epoch.
UPDATE root_epochs e
   SET ledger_seq_at_start = coalesce(
       (SELECT max(o.ledger_seq) FROM ledger_outbox o
         WHERE o.published_at < e.started_at - interval '1 minute'), 0);

-- How far the ledger is folded: the newest checkpoint's last object, as the compaction
-- that wrote it recorded, for the gauges (the checkpoints in the blob store are what every
-- check reads).
ALTER TABLE ledger_head ADD COLUMN folded_through bigint NOT NULL DEFAULT 0;
ALTER TABLE ledger_head ADD COLUMN folded_at timestamptz;
