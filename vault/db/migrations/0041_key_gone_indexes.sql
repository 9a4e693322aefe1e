-- What a destroyed subject key takes with it, found by index (issue 19, fifth round:
-- goal 5). dv_subject_key_gone (migrations 0016, 0018) runs for every subject key an
-- erasure destroys: it marks the key's artefacts deleted, its records' values and the
-- subject's sealed reference gone, each found by the data keys under that subject key.
-- Artefacts, records and subjects had no index on their data key, so each of those
-- updates read all of the tenant's rows: in a burst of 10,000 erasures of subjects with
-- one record each, 12 ms of PostgreSQL time per destroyed key (pg_stat_statements), the
-- largest cost of the executor, and growing with the tenant. Each index covers only the
-- rows those updates can still change (their own conditions), so rows already erased
-- leave it.
CREATE INDEX artefacts_live_data_key ON artefacts (tenant_id, data_key_id)
    WHERE state IN ('active', 'uploading');
CREATE INDEX records_live_data_key ON records (tenant_id, data_key_id)
    WHERE value_sealed IS NOT NULL OR current;
CREATE INDEX subjects_sealed_ref_data_key ON subjects (tenant_id, ref_data_key_id)
    WHERE ref_sealed IS NOT NULL;
