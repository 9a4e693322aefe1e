-- name: insert_tenant
INSERT INTO tenants (id, slug) VALUES ($1, $2)

-- name: insert_kek
INSERT INTO tenant_keks (tenant_id, version, wrapped_key, root_epoch) VALUES ($1, $2, $3, $4)

-- name: insert_hmac_key
INSERT INTO tenant_hmac_keys (tenant_id, wrapped_key, root_epoch) VALUES ($1, $2, $3)

-- name: hmac_key
SELECT wrapped_key FROM tenant_hmac_keys WHERE tenant_id = $1 AND wrapped_key IS NOT NULL

-- name: directory
SELECT id, slug, status, created_at FROM dv_tenant_directory()

-- name: get_tenant
SELECT id, slug, status, settings, created_at, closure_due_at FROM tenants WHERE id = $1

-- name: settings_for_update
SELECT settings FROM tenants WHERE id = $1 FOR UPDATE

-- name: settings
SELECT settings FROM tenants WHERE id = $1

-- name: settings_key_share
-- The settings, the tenant's row locked FOR KEY SHARE to the end of the transaction: a
-- settings change (settings_for_update) waits for the reader's commit.
SELECT settings FROM tenants WHERE id = $1 FOR KEY SHARE

-- name: store_settings
UPDATE tenants SET settings = $2::jsonb WHERE id = $1
