-- name: still_live
-- A transfer in progress, confirmed on the clock (services/transfers.py): the API key
-- that started it ($2) is live (dv_require_live_key raises DV401 if it was revoked or
-- its tenant closed) and unexpired, and how many of its data keys ($3) are still there
-- with every key above them (subject key, KEK): any one destroyed and the data is gone.
SELECT (SELECT true FROM dv_require_live_key($1, $2)) AS api_key_live,
       NOT EXISTS (SELECT 1 FROM api_keys
                    WHERE tenant_id = $1 AND id = $2 AND expires_at <= now())
         AS api_key_unexpired,
       (SELECT count(*) FROM data_keys d
          JOIN subject_keys s ON s.tenant_id = d.tenant_id AND s.id = d.subject_key_id
          JOIN tenant_keks k ON k.tenant_id = s.tenant_id AND k.version = s.kek_version
         WHERE d.tenant_id = $1 AND d.id = ANY($3::uuid[])
           AND d.wrapped_key IS NOT NULL AND s.wrapped_key IS NOT NULL
           AND k.wrapped_key IS NOT NULL)::int AS data_keys_live
