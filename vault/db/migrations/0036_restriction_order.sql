-- The order in which a subject's restriction was placed and lifted (sixth review): each
-- change counts itself here, in the UPDATE that makes it, under the subject's row lock,
-- so the counts follow the order the changes took effect in (a placing whose transaction
-- started before a lift that committed first counts after it). The restriction's entry in
-- the shred ledger carries the count (vault/services/ledger_standing.py); a restore
-- replays the entry with the highest, where it used the transaction's start time
-- (`now()`) and could take the earlier change for the later. A replayed entry sets the
-- count too: the restored database goes on counting from it, and a second replay finds
-- nothing newer than what it has.
ALTER TABLE subjects ADD COLUMN restriction_changes bigint NOT NULL DEFAULT 0;
