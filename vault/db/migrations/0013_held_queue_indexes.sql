-- Indexes for the passes that retry what holds kept (workers/erasure.py, workers/retention.py):
-- without them each pass reads every held erasure or every retired record version of a
-- tenant, which grows with the tenant's history.

-- Retired record versions whose sealed value is still there: only those a hold kept.
CREATE INDEX records_kept_versions ON records (tenant_id, subject_id, name, version)
    WHERE NOT current AND value_sealed IS NOT NULL;

-- Held erasures in (requested_at, id) order, the cursor both held-erasure claims page by.
CREATE INDEX erasures_held ON erasures (tenant_id, requested_at, id) WHERE status = 'held';
