-- The sender's side: rate history, account back-off, report leases and sync claims.

-- One row per message the SMTP server accepted, kept a day so the minute/hour/day windows are
-- counted exactly by every pod, and independent of message retention.
CREATE TABLE send_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_pk bigint NOT NULL REFERENCES accounts (pk) ON DELETE CASCADE,
    tenant_id  text NOT NULL,
    sent_at    double precision NOT NULL
);
CREATE INDEX send_log_account ON send_log (account_pk, sent_at);
CREATE INDEX send_log_tenant ON send_log (tenant_id, sent_at);
-- Purging by age; BRIN because rows arrive in time order and it costs almost nothing to keep.
CREATE INDEX send_log_age ON send_log USING brin (sent_at);

-- Rows a sender holds now: part of the rate budget (reserved slots).
CREATE INDEX messages_sending_account ON messages (account_pk) WHERE state = 'sending';

-- Adaptive back-off after 421/451 answers, and the moment a rate-limited account has a free slot.
ALTER TABLE accounts
    ADD COLUMN throttle_until double precision,
    ADD COLUMN throttle_level integer NOT NULL DEFAULT 0,
    ADD COLUMN rate_free_at   double precision;

-- One reporter at a time per tenant (keeps a tenant's reports in order), across all pods.
ALTER TABLE tenants
    ADD COLUMN sync_owner       text,
    ADD COLUMN sync_lease_until timestamptz;

-- Events being reported by one reporter; an expired lease is free again.
ALTER TABLE message_events
    ADD COLUMN report_owner       text,
    ADD COLUMN report_lease_until timestamptz;

-- Retention: final messages by the time of their outcome.
CREATE INDEX messages_final ON messages (smtp_ts) WHERE state IN ('sent', 'error');
