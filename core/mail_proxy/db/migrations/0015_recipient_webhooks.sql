-- Per-recipient outcomes as webhook events of their own (issue 15, SPEC section 13).
--
-- Every change of a recipient's outcome in `message_recipients` (a refusal at RCPT/DATA, a
-- deferral, a later acceptance, a refusal at intake, a bounce turning `accepted` into
-- `refused`) becomes one delivery per endpoint subscribed *by name* to `recipient_accepted`,
-- `recipient_refused` or `recipient_deferred` (never through "all events": existing endpoints
-- see no new traffic). Its metadata is the recipient's `{"address", "status", "code",
-- "reason"}`, as in the `recipients` list. A status is delivered once per recipient and
-- endpoint (a deferral retried with a new reason is not announced again). Messages whose
-- recipients all accepted at once have no rows, so no per-recipient events: their `sent`
-- event says it. These deliveries belong to no stored event (`event_id` NULL, `recipient`
-- set).
ALTER TABLE webhook_deliveries ADD COLUMN recipient text;
ALTER TABLE webhook_deliveries ALTER COLUMN event_id DROP NOT NULL;
CREATE UNIQUE INDEX webhook_deliveries_recipient_once
    ON webhook_deliveries (webhook_pk, tenant_id, message_id, recipient, event_type)
    WHERE recipient IS NOT NULL;

CREATE FUNCTION mail_proxy_recipient_fanout() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE active AND event_types &&
                   ARRAY['recipient_accepted', 'recipient_refused', 'recipient_deferred']) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (webhook_pk, tenant_id, event_id, message_id, event_type,
                                    event_ts, description, metadata, recipient)
    SELECT w.pk, m.tenant_id, NULL, m.id, 'recipient_' || n.status, n.updated_ts, n.reason,
           jsonb_build_object('address', coalesce(n.submitted, n.address), 'status', n.status,
                              'code', n.code, 'reason', n.reason),
           n.address
    FROM changed_recipients n
    JOIN messages m ON m.pk = n.message_pk
    JOIN webhooks w ON w.tenant_id = m.tenant_id AND w.active
    WHERE 'recipient_' || n.status = ANY (w.event_types)
    ORDER BY n.message_pk, n.address
    ON CONFLICT DO NOTHING;
    IF FOUND THEN
        PERFORM pg_notify('mail_proxy_webhooks', '');
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER message_recipients_webhook_fanout_insert AFTER INSERT ON message_recipients
    REFERENCING NEW TABLE AS changed_recipients
    FOR EACH STATEMENT EXECUTE FUNCTION mail_proxy_recipient_fanout();
CREATE TRIGGER message_recipients_webhook_fanout_update AFTER UPDATE ON message_recipients
    REFERENCING NEW TABLE AS changed_recipients
    FOR EACH STATEMENT EXECUTE FUNCTION mail_proxy_recipient_fanout();
