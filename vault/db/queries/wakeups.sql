-- Wake-ups for the workers (vault/services/wakeups.py): delivered at commit to every
-- process LISTENing on the channel; the payload is a tenant id.

-- name: notify
SELECT pg_notify($1::text, $2::text)

-- name: notify_many
-- Several wake-ups in one statement ($1 the channels, $2 the tenant ids, pairwise): the
-- coalesced ones an API process sends after the work committed (WakeupSender).
SELECT count(pg_notify(c, t)) FROM unnest($1::text[], $2::text[]) AS w(c, t)
