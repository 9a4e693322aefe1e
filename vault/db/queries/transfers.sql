-- name: behind_barrier
-- A transfer's confirmation re-writes its rows in transfer_keys (still_live: one lost
-- with a database crash is written again), so it is a hold like any other and stands
-- where every hold stands against an erasure's completion (migration 0042): the tenant's
-- transfer-holds lock taken shared, in a statement of its own before still_live reads
-- its keys, kept to the commit. Without it, a confirmation whose snapshot saw a key
-- live could re-insert its row after the publisher's barrier and completion had passed,
-- and the transfer went on decrypting after `completed` until its next check.
SELECT pg_advisory_xact_lock_shared(dv_transfer_holds_lock_key($1))

-- name: still_live
-- A transfer in progress, confirmed on the clock (services/transfers.py): the API key
-- that started it ($2) is live (dv_require_live_key raises DV401 if it was revoked or
-- its tenant closed) and unexpired, and how many of its data keys ($3) are still there
-- with every key above them (subject key, KEK): any one destroyed and the data is gone.
-- In the same statement the transfer's rows in transfer_keys (transfer $4) are renewed
-- for $5 seconds for the keys it holds (written again if missing: one lost with a
-- database crash is back at the next check). Rows of keys it no longer holds are not
-- deleted here: $3 was read before this statement, and a hold the same transfer
-- committed meanwhile (a read's own statement, an export's next claim, a listing's page)
-- is not in it (red team 10). They stop being renewed and expire by the clock (at most
-- $5 seconds), or go when the transfer ends.
WITH renewed AS (
    INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)
    SELECT $1, $4, held, now() + make_interval(secs => $5) FROM unnest($3::uuid[]) AS held
    ON CONFLICT (tenant_id, transfer_id, data_key_id)
       DO UPDATE SET held_until = EXCLUDED.held_until
    RETURNING 1)
SELECT (SELECT true FROM dv_require_live_key($1, $2)) AS api_key_live,
       NOT EXISTS (SELECT 1 FROM api_keys
                    WHERE tenant_id = $1 AND id = $2 AND expires_at <= now())
         AS api_key_unexpired,
       (SELECT count(*) FROM data_keys d
          JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
          JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
         WHERE d.tenant_id = $1 AND d.id = ANY($3::uuid[])
           AND d.wrapped_key IS NOT NULL AND s.wrapped_key IS NOT NULL
           AND k.wrapped_key IS NOT NULL)::int AS data_keys_live

-- name: hold_key
-- Transfer $2 holds data key $3 for $4 seconds (migration 0026), in the transaction that
-- creates the key (an upload: it is live, nothing can have shredded it yet).
INSERT INTO transfer_keys (tenant_id, transfer_id, data_key_id, held_until)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (tenant_id, transfer_id, data_key_id) DO UPDATE SET held_until = EXCLUDED.held_until

-- name: hold_live_key
-- The same for a key read earlier (a download), in one round trip and only while the key
-- is live: false once it was destroyed (migration 0026 `dv_transfer_hold`).
SELECT dv_transfer_hold($1, $2, $3, $4)

-- name: release
-- The transfer ended (or was cut) and its streams are closed: it holds no key any more.
SELECT dv_transfer_release($1, $2)

-- name: release_many
-- Transfers $2 ended (their answers out, or cut): released together, off the request
-- path (vault/services/transfer_releases.py; migration 0035).
SELECT dv_transfer_release_many($1, $2)

-- name: delete_expired
-- Rows of processes that died holding a key: they hold nothing any more (held_until
-- passed), and completion ignores them already. Hygiene for the sweeper, by the
-- database's clock (the one held_until is written by), not the sweep's.
DELETE FROM transfer_keys WHERE tenant_id = $1 AND held_until <= now()

-- name: hold_keys
-- Transfer $2 holds every live key of $3 for $4 seconds, in one statement, and returns
-- the held keys' rows with the columns of keys.sql `data_key_by_id` from the same
-- snapshot (an answer's decrypted metadata: migration 0038). $5 false: committed without
-- its own WAL flush (the access-log commit the answer waits for flushes and confirms it).
SELECT * FROM dv_transfer_hold_keys($1, $2, $3, $4, $5)
