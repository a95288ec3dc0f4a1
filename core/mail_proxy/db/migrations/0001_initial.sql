-- Initial schema. Conventions: *_ts columns are Unix epoch seconds (the wire format of the
-- reference); created_at/updated_at are timestamptz. Secrets are stored in the ENC: format.

CREATE TABLE instance (
    id                   integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    name                 text NOT NULL DEFAULT 'mail-proxy',
    admin_token_hash     text,
    bounce_enabled       boolean NOT NULL DEFAULT false,
    bounce_imap_host     text,
    bounce_imap_port     integer NOT NULL DEFAULT 993,
    bounce_imap_user     text,
    bounce_imap_password text,
    bounce_imap_folder   text NOT NULL DEFAULT 'INBOX',
    bounce_imap_ssl      boolean NOT NULL DEFAULT true,
    bounce_poll_interval integer NOT NULL DEFAULT 60,
    bounce_return_path   text,
    bounce_last_uid      bigint,
    bounce_last_sync     bigint,
    bounce_uidvalidity   bigint,
    config               jsonb NOT NULL DEFAULT '{}'::jsonb,
    managed_by           text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
INSERT INTO instance (id) VALUES (1);

CREATE TABLE tenants (
    id                     text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$'),
    name                   text,
    client_auth            jsonb,
    client_base_url        text,
    client_sync_path       text,
    client_attachment_path text,
    rate_limits            jsonb,
    large_file_config      jsonb,
    active                 boolean NOT NULL DEFAULT true,
    suspended_batches      text,
    api_key_hash           text,
    api_key_expires_at     bigint,
    managed_by             text,
    -- delivery-report state, shared by every pod
    last_sync_ts           double precision,
    dnd_until              bigint,
    sync_failures          integer NOT NULL DEFAULT 0,
    sync_retry_at          bigint,
    last_sync_error        text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tenants_api_key_hash ON tenants (api_key_hash) WHERE api_key_hash IS NOT NULL;

CREATE TABLE accounts (
    pk               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text NOT NULL,
    tenant_id        text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    host             text NOT NULL,
    port             integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    username         text,
    password         text,
    ttl              integer NOT NULL DEFAULT 300,
    limit_per_minute integer,
    limit_per_hour   integer,
    limit_per_day    integer,
    limit_behavior   text NOT NULL DEFAULT 'defer' CHECK (limit_behavior IN ('defer', 'reject')),
    use_tls          boolean,
    tls_verify       boolean NOT NULL DEFAULT true,
    batch_size       integer,
    is_pec_account   boolean NOT NULL DEFAULT false,
    imap_host        text,
    imap_port        integer NOT NULL DEFAULT 993,
    imap_user        text,
    imap_password    text,
    imap_folder      text NOT NULL DEFAULT 'INBOX',
    imap_ssl         boolean NOT NULL DEFAULT true,
    imap_last_uid    bigint,
    imap_uidvalidity bigint,
    imap_last_sync   bigint,
    managed_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);

-- Message state is stored, not derived. 'sending' rows carry a lease (owner + expiry).
CREATE TABLE messages (
    pk              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text NOT NULL,
    tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_id      text,
    account_pk      bigint REFERENCES accounts (pk) ON DELETE CASCADE,
    priority        smallint NOT NULL DEFAULT 2 CHECK (priority BETWEEN 0 AND 3),
    payload         jsonb NOT NULL,
    batch_code      text,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'deferred', 'sending', 'sent', 'error')),
    deferred_ts     bigint,
    smtp_ts         bigint,
    attempts        integer NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_until     timestamptz,
    error           text,
    error_ts        bigint,
    is_pec          boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);
-- What a sender asks for: ready work of one account, in priority then FIFO order.
CREATE INDEX messages_ready ON messages (account_pk, priority, pk)
    WHERE state IN ('pending', 'deferred');
-- Leases that a dead sender left behind.
CREATE INDEX messages_leased ON messages (lease_until) WHERE state = 'sending';
CREATE INDEX messages_tenant_state ON messages (tenant_id, state);

CREATE TABLE message_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_pk  bigint NOT NULL REFERENCES messages (pk) ON DELETE CASCADE,
    tenant_id   text NOT NULL,
    message_id  text NOT NULL,
    event_type  text NOT NULL,
    event_ts    bigint NOT NULL,
    description text,
    metadata    jsonb,
    reported_ts bigint
);
CREATE INDEX message_events_message ON message_events (message_pk, id);
-- What the reporter asks for: a tenant's unreported events, oldest first.
CREATE INDEX message_events_unreported ON message_events (tenant_id, id) WHERE reported_ts IS NULL;

CREATE TABLE command_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_ts      bigint NOT NULL,
    endpoint        text NOT NULL,
    tenant_id       text,
    payload         jsonb NOT NULL,
    response_status integer,
    response_body   jsonb
);
CREATE INDEX command_log_ts ON command_log (command_ts);

-- Wake idle senders in every process when work arrives (one NOTIFY per statement, not per row).
CREATE FUNCTION mail_proxy_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mail_proxy_work', '');
    RETURN NULL;
END;
$$;
CREATE TRIGGER messages_notify_work AFTER INSERT ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION mail_proxy_notify_work();
