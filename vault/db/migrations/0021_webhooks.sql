-- Webhooks (API.md "Webhooks"; DESIGN.md "Events for tenants").
--
-- webhook_endpoints: where a tenant wants its events, and the endpoint's signing secret,
-- wrapped under the tenant KEK (purpose `webhook-secret`, crypto/FORMAT.md); a key
-- rotation rewraps it under the new KEK version before the old one is destroyed, and
-- deleting the endpoint nulls it.
--
-- webhook_events: the outbox. A state change that tenants hear about (an erasure
-- completed, held, cancelled or overdue; a hold released or expired; a closure
-- scheduled) inserts its event, with one webhook_deliveries row per subscribed endpoint,
-- in the transaction that makes the change: a change that rolls back sends nothing, and
-- one that commits cannot lose its event. `body` is the exact JSON every attempt sends,
-- so a retried or replayed delivery is the same message under the same webhook-id.
--
-- webhook_deliveries: one event to one endpoint, the queue the delivery job claims
-- (FOR UPDATE SKIP LOCKED, then a lease, so no transaction stays open across an HTTP
-- call). `ordering_key` (the erasure, the hold, the tenant) and `event_seq` keep a
-- receiver's events about one thing in order: a delivery waits while an earlier one with
-- the same key to the same endpoint is still pending.
--
-- webhook_attempts: every attempt, with its outcome and the receiver's status code.

CREATE TABLE webhook_endpoints (
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    id             uuid NOT NULL,
    url            text NOT NULL,
    events         text[] NOT NULL,
    description    text,
    secret_wrapped bytea,
    kek_version    integer NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     uuid NOT NULL,
    deleted_at     timestamptz,
    PRIMARY KEY (tenant_id, id),
    -- A live endpoint has its secret; a deleted one has none.
    CHECK ((secret_wrapped IS NULL) = (deleted_at IS NOT NULL))
);
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (tenant_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

CREATE TABLE webhook_events (
    tenant_id    uuid NOT NULL REFERENCES tenants (id),
    id           uuid NOT NULL,
    seq          bigserial,
    type         text NOT NULL,
    ordering_key text NOT NULL,
    body         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE webhook_deliveries (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    endpoint_id     uuid NOT NULL,
    event_id        uuid NOT NULL,
    event_seq       bigint NOT NULL,
    ordering_key    text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    -- Failed attempts since the delivery was queued (or retried by hand): the step of the
    -- backoff schedule (vault/domain/webhooks.py).
    failures        integer NOT NULL DEFAULT 0,
    attempt_count   integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id),
    FOREIGN KEY (tenant_id, event_id) REFERENCES webhook_events (tenant_id, id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (tenant_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries
    (tenant_id, endpoint_id, ordering_key, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_listing ON webhook_deliveries
    (tenant_id, endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_age ON webhook_deliveries (tenant_id, updated_at)
    WHERE status <> 'pending';

CREATE TABLE webhook_attempts (
    tenant_id     uuid NOT NULL,
    delivery_id   uuid NOT NULL,
    seq           bigserial,
    attempted_at  timestamptz NOT NULL,
    outcome       text NOT NULL,
    response_code integer,
    duration_ms   integer NOT NULL,
    PRIMARY KEY (tenant_id, delivery_id, seq),
    FOREIGN KEY (tenant_id, delivery_id) REFERENCES webhook_deliveries (tenant_id, id)
        ON DELETE CASCADE
);

-- Overdue is a moment, not a status: the event is sent once per erasure.
ALTER TABLE erasures ADD COLUMN overdue_reported_at timestamptz;
CREATE INDEX erasures_overdue_unreported ON erasures (tenant_id, due_at)
    WHERE overdue_reported_at IS NULL AND status IN ('scheduled', 'in_progress');

ALTER TABLE webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_endpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_endpoints TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE webhook_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_events TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_deliveries TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

ALTER TABLE webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE webhook_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON webhook_attempts TO datavault_app
    USING (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('datavault.tenant_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON webhook_endpoints TO datavault_app;
GRANT SELECT, INSERT, DELETE ON webhook_events TO datavault_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_deliveries TO datavault_app;
GRANT SELECT, INSERT, DELETE ON webhook_attempts TO datavault_app;
GRANT USAGE ON SEQUENCE webhook_events_seq_seq, webhook_attempts_seq_seq TO datavault_app;
