-- Per-recipient outcomes and account health (issue 10; SPEC section 13).

-- The fate of each recipient of a message, written only for messages whose recipients did not
-- all accept at the first attempt (an all-accepted message needs no rows: its `sent` says it).
-- `address` is the normalised envelope address (IDNA domain, see mail_proxy.addresses).
-- status: accepted (250 at RCPT and DATA), refused (5xx, or given up / suppressed: final),
--         deferred (4xx: retried alone at `next_attempt_ts`).
CREATE TABLE message_recipients (
    message_pk      bigint NOT NULL REFERENCES messages (pk) ON DELETE CASCADE,
    address         text NOT NULL,
    status          text NOT NULL CHECK (status IN ('accepted', 'refused', 'deferred')),
    code            integer,
    reason          text,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_ts bigint,
    updated_ts      bigint NOT NULL,
    PRIMARY KEY (message_pk, address)
);

-- Account health: failures that belong to the account (TLS verification, authentication,
-- connection, DNS) hold its queue until a probe succeeds.
--   health            'ok' | 'unhealthy' (NULL: never tried yet)
--   health_reason     what is wrong and what to do, e.g. "certificate not trusted: ..."
--   health_checked_at when the account was last found working or failing
--   health_retry_at   epoch s: no message of the account is leased before then (the probe)
--   health_failures   consecutive account-level failures (the probe backs off on it)
ALTER TABLE accounts
    ADD COLUMN health            text CHECK (health IN ('ok', 'unhealthy')),
    ADD COLUMN health_reason     text,
    ADD COLUMN health_checked_at timestamptz,
    ADD COLUMN health_retry_at   double precision,
    ADD COLUMN health_failures   integer NOT NULL DEFAULT 0;
