-- Wake-ups for the workers (vault/services/wakeups.py): delivered at commit to every
-- process LISTENing on the channel; the payload is a tenant id.

-- name: notify
SELECT pg_notify($1::text, $2::text)
