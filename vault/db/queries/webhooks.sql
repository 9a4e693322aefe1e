-- Webhook endpoints, the event outbox and its deliveries (migration 0021).

-- name: lock_tenant_endpoints
-- Serialises counting and inserting a tenant's endpoints, so concurrent registrations
-- cannot pass MAX_WEBHOOKS_PER_TENANT together.
SELECT pg_advisory_xact_lock(hashtextextended('datavault.webhooks/' || $1::uuid::text, 0))

-- name: count_live_endpoints
SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL

-- name: insert_endpoint
INSERT INTO webhook_endpoints (tenant_id, id, url, events, description, secret_wrapped,
                               kek_version, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, url, events, description, created_at

-- name: list_live_endpoints
SELECT id, url, events, description, created_at FROM webhook_endpoints
 WHERE tenant_id = $1 AND deleted_at IS NULL
   AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))
 ORDER BY created_at DESC, id DESC
 LIMIT $4

-- name: get_live_endpoint
SELECT id, url, events, description, created_at FROM webhook_endpoints
 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL

-- name: delete_endpoint
-- Its secret goes with it; deliveries still queued for it are cancelled.
UPDATE webhook_endpoints SET deleted_at = now(), secret_wrapped = NULL
 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
RETURNING id

-- name: cancel_pending_of_endpoint
UPDATE webhook_deliveries SET status = 'cancelled', lease_until = NULL, updated_at = now()
 WHERE tenant_id = $1 AND endpoint_id = $2 AND status = 'pending'

-- name: subscribed
-- Whether any live endpoint of the tenant takes events of type $2: an event whose payload
-- costs queries to build is built only then.
SELECT EXISTS (SELECT 1 FROM webhook_endpoints
                WHERE tenant_id = $1 AND deleted_at IS NULL AND $2 = ANY(events))

-- name: insert_event
-- The outbox row of a state change and one delivery per live endpoint subscribed to its
-- type, in the caller's transaction. Nothing is written when no endpoint subscribes.
-- $1 tenant, $2 event id, $3 type, $4 ordering key, $5 body, $6 first attempt time.
WITH targets AS (
    SELECT id FROM webhook_endpoints
     WHERE tenant_id = $1 AND deleted_at IS NULL AND $3 = ANY(events)
), event AS (
    INSERT INTO webhook_events (tenant_id, id, type, ordering_key, body)
    SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM targets)
    RETURNING id, seq
)
INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_seq, ordering_key,
                                next_attempt_at)
SELECT $1, gen_random_uuid(), t.id, e.id, e.seq, $4, $6 FROM event e, targets t
RETURNING id

-- name: insert_test_event
-- A test event for one live endpoint, whatever it subscribed to. $1 tenant, $2 endpoint,
-- $3 event id, $4 type, $5 ordering key, $6 body, $7 first attempt time.
WITH endpoint AS (
    SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
), event AS (
    INSERT INTO webhook_events (tenant_id, id, type, ordering_key, body)
    SELECT $1, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM endpoint)
    RETURNING id, seq
)
INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_seq, ordering_key,
                                next_attempt_at)
SELECT $1, gen_random_uuid(), $2, e.id, e.seq, $5, $7 FROM event e
RETURNING id

-- name: claim_due
-- Up to $4 deliveries due at $2 whose endpoint has no earlier pending delivery about the
-- same thing (the ordering key), leased until $2 + $3 seconds: a worker that dies
-- mid-delivery leaves them to the next one once the lease ends (at least once).
UPDATE webhook_deliveries d SET lease_until = $2 + make_interval(secs => $3),
       updated_at = now()
 WHERE d.tenant_id = $1 AND d.id IN (
       SELECT c.id FROM webhook_deliveries c
        WHERE c.tenant_id = $1 AND c.status = 'pending' AND c.next_attempt_at <= $2
          AND (c.lease_until IS NULL OR c.lease_until <= $2)
          AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries p
               WHERE p.tenant_id = c.tenant_id AND p.endpoint_id = c.endpoint_id
                 AND p.ordering_key = c.ordering_key AND p.status = 'pending'
                 AND p.event_seq < c.event_seq)
        ORDER BY c.event_seq
        LIMIT $4
          FOR UPDATE SKIP LOCKED)
RETURNING d.id

-- name: for_sending
-- What an attempt needs. The endpoint row is locked FOR SHARE until the claim commits: a
-- key rotation rewraps secrets under FOR UPDATE before it destroys the old KEK version,
-- so the version read here stays live while the secret is opened.
SELECT d.id, d.failures, d.event_id, e.type, e.body, w.id AS endpoint_id, w.url,
       w.secret_wrapped, w.kek_version
  FROM webhook_deliveries d
  JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
  JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
 WHERE d.tenant_id = $1 AND d.id = ANY($2::uuid[])
 ORDER BY d.event_seq
   FOR SHARE OF w

-- name: still_deliverable
-- Right before an attempt is posted: the delivery is still pending (not cancelled) and its
-- endpoint not deleted, its secret not destroyed. A claim opened the secret up to a
-- round's worth of slow attempts earlier; a deletion since then must stop the post.
SELECT EXISTS (
    SELECT 1 FROM webhook_deliveries d
      JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
     WHERE d.tenant_id = $1 AND d.id = $2 AND d.status = 'pending'
       AND w.deleted_at IS NULL AND w.secret_wrapped IS NOT NULL) AS deliverable

-- name: insert_attempt
INSERT INTO webhook_attempts (tenant_id, delivery_id, attempted_at, outcome, response_code,
                              duration_ms)
VALUES ($1, $2, $3, $4, $5, $6)

-- name: settle_attempt
-- After an attempt: delivered, waiting for the next one ($4 pending, $5 its time) or given
-- up ($4 failed). Only a delivery still pending is touched: one cancelled meanwhile (its
-- endpoint deleted) stays cancelled.
UPDATE webhook_deliveries
   SET status = $4, failures = $3, attempt_count = attempt_count + 1,
       next_attempt_at = coalesce($5, next_attempt_at), lease_until = NULL,
       delivered_at = CASE WHEN $4 = 'delivered' THEN $6 ELSE delivered_at END,
       updated_at = now()
 WHERE tenant_id = $1 AND id = $2 AND status = 'pending'

-- name: list_deliveries
SELECT d.id, d.event_id, e.type, d.status, d.attempt_count, d.next_attempt_at,
       d.created_at, d.delivered_at
  FROM webhook_deliveries d
  JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
 WHERE d.tenant_id = $1 AND d.endpoint_id = $2
   AND ($3::text IS NULL OR d.status = $3)
   AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))
 ORDER BY d.created_at DESC, d.id DESC
 LIMIT $6

-- name: recent_attempts
-- The newest $3 attempts of each of the deliveries $2, newest first.
SELECT delivery_id, attempted_at, outcome, response_code, duration_ms FROM (
    SELECT a.*, row_number() OVER (PARTITION BY delivery_id ORDER BY seq DESC) AS n
      FROM webhook_attempts a WHERE tenant_id = $1 AND delivery_id = ANY($2::uuid[])
) newest
 WHERE n <= $3
 ORDER BY delivery_id, seq DESC

-- name: get_delivery_for_update
SELECT d.id, d.status FROM webhook_deliveries d
  JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
 WHERE d.tenant_id = $1 AND d.endpoint_id = $2 AND d.id = $3 AND w.deleted_at IS NULL
   FOR UPDATE OF d

-- name: requeue_delivery
-- Sent again at $3 with a fresh retry schedule; a pending one just moves up to $3.
UPDATE webhook_deliveries
   SET status = 'pending', failures = CASE WHEN status = 'pending' THEN failures ELSE 0 END,
       next_attempt_at = LEAST(next_attempt_at, $3), updated_at = now()
 WHERE tenant_id = $1 AND id = $2

-- name: delivery_summary
SELECT d.id, d.event_id, e.type, d.status, d.attempt_count, d.next_attempt_at,
       d.created_at, d.delivered_at
  FROM webhook_deliveries d
  JOIN webhook_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
 WHERE d.tenant_id = $1 AND d.id = $2

-- name: secrets_under_old_keks
-- Live endpoints whose secret is still wrapped under a KEK version older than $2, locked
-- while the rotation rewraps them.
SELECT id, kek_version, secret_wrapped FROM webhook_endpoints
 WHERE tenant_id = $1 AND deleted_at IS NULL AND kek_version < $2
   FOR UPDATE

-- name: rewrap_secret
UPDATE webhook_endpoints SET secret_wrapped = $3, kek_version = $4
 WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL

-- name: overdue_unreported
-- Erasures past due_at at $2 still to be done ($3: the running statuses), not yet
-- announced; claimed so two workers announce each once.
SELECT id, status, due_at FROM erasures
 WHERE tenant_id = $1 AND overdue_reported_at IS NULL AND due_at < $2
   AND status = ANY($3::text[])
 ORDER BY due_at, id
 LIMIT $4
   FOR UPDATE SKIP LOCKED

-- name: mark_overdue_reported
UPDATE erasures SET overdue_reported_at = $3 WHERE tenant_id = $1 AND id = $2

-- name: prune_deliveries
-- Settled deliveries (and, by cascade, their attempts) older than $2.
DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND status <> 'pending' AND updated_at < $2

-- name: prune_events
-- Events none of whose deliveries are left.
DELETE FROM webhook_events e
 WHERE e.tenant_id = $1 AND e.created_at < $2
   AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d
                    WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id)
