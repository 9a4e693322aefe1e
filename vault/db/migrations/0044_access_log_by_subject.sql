-- Every request about a subject, found by index. The runbook's checks after an erasure
-- (`GET /v1/access-log?subject_ref=X`, "who read X, and did anyone read it afterwards")
-- filter a tenant's access log by the subject's keyed hash, newest first. The only
-- indexes were by time and by API key, so that search read the tenant's whole log back
-- to its first row whenever X had fewer matching rows than the page asked for: seconds
-- for a log of millions of rows, on the request path of the compliance team. Partial: a
-- request about no subject (listings, settings, the console) adds nothing to it.
CREATE INDEX access_log_subject ON access_log (tenant_id, subject_ref_hash, seq DESC)
    WHERE subject_ref_hash IS NOT NULL;
