-- Signed shred-ledger objects (vault/services/ledger_objects.py).
--
-- Every ledger object is now signed with the deployment's receipt key; objects written
-- before carry no signature and are accepted only before the chain's first signed one.
-- The publisher records that object's seq here in the transaction that moves the head
-- past it, so a database that holds a head past it refuses an unsigned object after its
-- head even when every object it walks is unsigned (appended by someone who can write
-- the bucket). NULL: no signed object yet (a database from before the upgrade, whose
-- head is then before the first signed object, which any walk from it meets).
ALTER TABLE ledger_head ADD COLUMN signed_from bigint CHECK (signed_from >= 1);
