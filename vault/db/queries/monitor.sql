-- Gauges for one tenant in one round trip; workers/monitor.py sums them over tenants.
-- $1 tenant id, $2 the monitor's "now" (injectable, so tests can move past due_at).
-- Overdue and oldest-open count erasures the vault still has to do (scheduled or
-- in_progress). Held ones wait on legal holds or statutory retention by design: they are
-- counted in datavault_erasures{status="held"}, not as overdue. Oldest-open also leaves
-- out a scheduled erasure whose not_before is still ahead (the tenant's grace period or
-- the rate brake: waiting by choice, cancellable); once it is due its age counts from the
-- request, so a stuck one past a long grace period shows at once.

-- name: tenant_gauges
SELECT e.*, h.*, l.*, w.*
  FROM (SELECT count(*) FILTER (WHERE status = 'scheduled') AS scheduled,
               count(*) FILTER (WHERE status = 'in_progress') AS in_progress,
               count(*) FILTER (WHERE status = 'completed') AS completed,
               count(*) FILTER (WHERE status = 'held') AS held,
               count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
               min(requested_at) FILTER (WHERE status = 'in_progress'
                                            OR (status = 'scheduled' AND not_before <= $2))
                   AS oldest_open_requested_at,
               count(*) FILTER (WHERE status IN ('scheduled', 'in_progress')
                                  AND due_at < $2) AS overdue,
               min(not_before) FILTER (WHERE status = 'scheduled' AND not_before <= $2)
                   AS oldest_due_not_before,
               count(*) FILTER (WHERE status = 'scheduled' AND braked AND not_before > $2)
                   AS rate_braked
          FROM erasures WHERE tenant_id = $1) e,
       (SELECT count(*) AS holds_active,
               count(*) FILTER (WHERE expires_at <= $2 + interval '7 days') AS holds_expiring_7d
          FROM holds h WHERE tenant_id = $1 AND dv_hold_in_force(h, $2)) h,
       (SELECT count(*) FILTER (WHERE fact IS NULL) AS keys_destroyed,
               min(destroyed_at) FILTER (WHERE published_at IS NULL)
                   AS oldest_unpublished_destroyed_at
          FROM ledger_outbox WHERE tenant_id = $1) l,
       (SELECT count(*) AS webhook_pending, min(created_at) AS oldest_webhook_pending_at
          FROM webhook_deliveries WHERE tenant_id = $1 AND status = 'pending') w

-- name: current_epoch_started
-- Deployment-wide (no tenant): when the current root-key epoch began.
SELECT max(started_at) FROM root_epochs WHERE ended_at IS NULL

-- name: ledger_state
-- Deployment-wide: the ledger head the database recorded and how far it is folded.
SELECT seq, folded_through FROM ledger_head WHERE singleton
