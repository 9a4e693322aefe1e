-- When a start-up replay restored an erasure from the shred ledger (inserted it, or
-- brought it up to the state it ran into since the backup). The executor's retention
-- floor for restored erasures (erasures.sql `shred_inputs`, `stated_until`) asked the
-- journal for an event whose free-text detail said so; a rule that rests on a sentence
-- breaks when the sentence is reworded. The column says it; the journal keeps the words
-- for people.
ALTER TABLE erasures ADD COLUMN restored_at timestamptz;

UPDATE erasures e
   SET restored_at = (SELECT min(ev.at) FROM erasure_events ev
                       WHERE ev.tenant_id = e.tenant_id AND ev.erasure_id = e.id
                         AND ev.detail = 'restored from the shred ledger')
 WHERE EXISTS (SELECT 1 FROM erasure_events ev
                WHERE ev.tenant_id = e.tenant_id AND ev.erasure_id = e.id
                  AND ev.detail = 'restored from the shred ledger');
