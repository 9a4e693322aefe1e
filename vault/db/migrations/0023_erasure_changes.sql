-- An erasure's updated_at says when its status or contents last changed (API.md,
-- `GET /v1/erasures?updated_since=`): a client follows erasures by it. The status moves
-- set it already (erasures.sql, set_status); what an erasure shows beside its status is
-- its items (shredded, held by which holds, retained until when), and those change
-- without a status move too: a held category's holds change, a retention end moves.
--
-- So every real change of an item stamps its erasure, here, once, whichever query made
-- it. The executor re-writes a held erasure's items with the same values on every pass:
-- an UPDATE that changes nothing stamps nothing, or every held erasure would show as
-- changed every few seconds. Within one transaction the first stamp is enough (now() is
-- the transaction's time), so a shred of many keys updates its erasure row once.
CREATE FUNCTION dv_erasure_item_changed() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE erasures SET updated_at = now()
     WHERE tenant_id = NEW.tenant_id AND id = NEW.erasure_id AND updated_at < now();
    RETURN NULL;
END
$$;

CREATE TRIGGER erasure_item_inserted AFTER INSERT ON erasure_items
    FOR EACH ROW EXECUTE FUNCTION dv_erasure_item_changed();
CREATE TRIGGER erasure_item_updated AFTER UPDATE ON erasure_items
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION dv_erasure_item_changed();
