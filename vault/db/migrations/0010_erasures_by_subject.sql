-- Every subject read asks which of the subject's generations were erased: without this
-- index that scans all of the tenant's erasures, once per request.
CREATE INDEX erasures_by_subject ON erasures (tenant_id, subject_id, generation)
    WHERE status <> 'cancelled';
