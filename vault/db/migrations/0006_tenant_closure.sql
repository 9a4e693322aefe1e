-- Tenant closure: scheduled destruction of every key of the tenant after a delay,
-- cancellable before then; holds keep what they cover, and the tenant KEK and HMAC key
-- go only once nothing is kept.

ALTER TABLE tenants
    ADD COLUMN closure_requested_at timestamptz,
    ADD COLUMN closure_due_at       timestamptz,
    ADD COLUMN closure_requested_by uuid,
    ADD COLUMN closure_reason       text,
    ADD COLUMN closed_at            timestamptz;
