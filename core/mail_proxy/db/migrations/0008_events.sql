-- Events apps can rely on: idempotency keys, signed per-event webhooks, provider feedback.

-- add-messages answers kept per caller (a tenant id, or '' for the admin) and key, so a replay
-- within the TTL gets the same answer without touching the queue. Only answers below 500 are
-- kept; retention purges them.
CREATE TABLE idempotency_keys (
    scope           text NOT NULL,
    key             text NOT NULL,
    request_hash    text NOT NULL,
    response_status integer NOT NULL,
    response_body   jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

-- A tenant's webhook endpoints (Standard Webhooks). Secrets are stored in the ENC: format; the
-- previous secret keeps signing beside the new one until `previous_secret_until` (rotation
-- with overlap). Failure state is per endpoint.
CREATE TABLE webhooks (
    pk                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                    text NOT NULL CHECK (id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    tenant_id             text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                   text NOT NULL,
    event_types           text[],  -- NULL: every event type
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_until timestamptz,
    active                boolean NOT NULL DEFAULT true,
    consecutive_failures  integer NOT NULL DEFAULT 0,
    last_success_at       timestamptz,
    last_failure_at       timestamptz,
    last_error            text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, id)
);

-- One row per (endpoint, event): a snapshot of the event, so a delivery outlives the event's
-- retention. Leased like messages (SKIP LOCKED + expiry) so exactly one pod delivers it.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_pk      bigint NOT NULL REFERENCES webhooks (pk) ON DELETE CASCADE,
    tenant_id       text NOT NULL,
    event_id        bigint NOT NULL,
    message_id      text NOT NULL,
    event_type      text NOT NULL,
    event_ts        bigint NOT NULL,
    description     text,
    metadata        jsonb,
    state           text NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    UNIQUE (webhook_pk, event_id)
);
-- What a deliverer asks for: due deliveries, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
    WHERE state <> 'pending';

-- Every event, whoever writes it (outcome writer, intake, bounce poller, provider feedback),
-- becomes one delivery per matching active endpoint, in the statement that stored it.
-- `pec_*` in `event_types` matches every PEC event.
CREATE FUNCTION mail_proxy_webhook_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE active) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (webhook_pk, tenant_id, event_id, message_id, event_type,
                                    event_ts, description, metadata)
    SELECT w.pk, e.tenant_id, e.id, e.message_id, e.event_type, e.event_ts, e.description,
           e.metadata
    FROM new_events e
    JOIN webhooks w ON w.tenant_id = e.tenant_id AND w.active
    WHERE w.event_types IS NULL
       OR e.event_type = ANY (w.event_types)
       OR (e.event_type LIKE 'pec\_%' AND 'pec_*' = ANY (w.event_types))
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('mail_proxy_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER message_events_webhook_fanout AFTER INSERT ON message_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION mail_proxy_webhook_fanout();

-- Provider feedback (SES, SendGrid, Mailgun, Postmark): per tenant and provider, what verifies
-- their notifications (secrets in the ENC: format inside `config`).
CREATE TABLE provider_feedback (
    tenant_id  text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    provider   text NOT NULL CHECK (provider IN ('ses', 'sendgrid', 'mailgun', 'postmark')),
    config     jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider)
);

-- Correlating a provider's report through the Message-ID a client gave its message.
CREATE INDEX messages_client_message_id ON messages (tenant_id, (payload ->> 'message_id'))
    WHERE payload ? 'message_id';
