-- Bounces, PEC receipts and suppression lists (issue 11; reference sections 10 and 11).

-- Per-tenant suppression list: a recipient here is refused at intake ("recipient suppressed").
-- `address` is the bare address, lowercased.
CREATE TABLE suppressions (
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    address     text NOT NULL CHECK (address = lower(address) AND address LIKE '%_@_%'),
    reason      text NOT NULL,
    source      text NOT NULL,
    message_id  text,
    bounce_code text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, address)
);
CREATE INDEX suppressions_created ON suppressions (tenant_id, created_at);

-- Every recognised bounce by address, kept for the soft-bounce window (N soft bounces within D
-- days suppress the address), independent of message retention.
CREATE TABLE bounce_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    address     text NOT NULL,
    bounce_type text NOT NULL CHECK (bounce_type IN ('hard', 'soft')),
    bounce_code text,
    message_pk  bigint,
    source      text NOT NULL,
    bounced_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bounce_log_address ON bounce_log (tenant_id, address, bounced_at);
CREATE INDEX bounce_log_age ON bounce_log USING brin (bounced_at);

-- One row per IMAP mailbox polled (instance bounce mailbox, tenant bounce mailboxes, PEC
-- accounts): the poller's lease (exactly one holder across every process) and the UID state,
-- so neither a restart nor a failover reads a message twice. `identity` is host/port/user/
-- folder: when it changes, the UID state belongs to another mailbox and starts over.
CREATE TABLE inbound_mailboxes (
    key             text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('bounce', 'pec')),
    tenant_id       text,
    identity        text,
    owner           text,
    lease_until     timestamptz,
    uidvalidity     bigint,
    last_uid        bigint NOT NULL DEFAULT 0,
    last_poll_ts    bigint,
    last_success_ts bigint,
    last_error      text,
    uncorrelated    bigint NOT NULL DEFAULT 0
);

ALTER TABLE instance
    -- Key of the correlation tokens carried by every message (X-Genro-Mail-Token, generated
    -- Message-ID, VERP return path): a forged bounce cannot name another tenant's message.
    ADD COLUMN correlation_secret text NOT NULL
        DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
    ADD COLUMN bounce_imap_starttls boolean NOT NULL DEFAULT false,
    ADD COLUMN bounce_processed_action text NOT NULL DEFAULT 'keep'
        CHECK (bounce_processed_action IN ('keep', 'seen', 'move')),
    ADD COLUMN bounce_processed_folder text;

-- A tenant's own bounce mailbox (beyond the reference): the instance's bounce_* fields without
-- the prefix, password encrypted; NULL = the tenant uses the instance mailbox.
ALTER TABLE tenants ADD COLUMN bounce_config jsonb;

ALTER TABLE accounts
    ADD COLUMN imap_starttls boolean NOT NULL DEFAULT false,
    ADD COLUMN imap_processed_action text NOT NULL DEFAULT 'keep'
        CHECK (imap_processed_action IN ('keep', 'seen', 'move')),
    ADD COLUMN imap_processed_folder text;

-- PEC timeouts look for sent PEC messages still waiting for a receipt.
CREATE INDEX messages_pec_waiting ON messages (smtp_ts) WHERE is_pec AND state = 'sent';
