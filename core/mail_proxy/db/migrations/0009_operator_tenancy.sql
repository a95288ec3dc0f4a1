-- The operator in a shared cluster (issue 16).
-- API-key rotation keeps the previous key valid for a grace period, and a row a resource
-- released (deletionPolicy Retain) remembers who released it, so only that resource (or an
-- explicit adoption) can take it back.
ALTER TABLE tenants ADD COLUMN previous_api_key_hash text;
ALTER TABLE tenants ADD COLUMN previous_api_key_expires_at bigint;
ALTER TABLE tenants ADD COLUMN released_by text;
ALTER TABLE accounts ADD COLUMN released_by text;
CREATE INDEX tenants_previous_api_key_hash ON tenants (previous_api_key_hash)
    WHERE previous_api_key_hash IS NOT NULL;
