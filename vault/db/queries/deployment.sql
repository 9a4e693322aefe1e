-- name: get_secret
SELECT wrapped, root_epoch FROM deployment_secrets WHERE name = $1

-- name: insert_secret
INSERT INTO deployment_secrets (name, wrapped, root_epoch) VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING

-- name: secret_created_at
SELECT created_at FROM deployment_secrets WHERE name = $1
