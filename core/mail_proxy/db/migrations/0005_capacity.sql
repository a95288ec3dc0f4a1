-- Capacity: a global SMTP connection cap per account, and message bytes rendered once.

-- At most max_connections SMTP connections to the account's server at a time, counted across
-- every sender process and pod (default 20, Postfix's default_destination_concurrency_limit).
-- A 421 "too many connections" lowers the effective cap to connection_cap until
-- connection_cap_until (epoch s).
ALTER TABLE accounts
    ADD COLUMN max_connections      integer NOT NULL DEFAULT 20
                                    CHECK (max_connections BETWEEN 1 AND 1000),
    ADD COLUMN connection_cap       integer,
    ADD COLUMN connection_cap_until double precision;

-- The connections each sender holds per account; a row whose lease ran out (its sender died)
-- no longer counts. Renewed by the sender's lease heartbeat.
CREATE TABLE smtp_connection_slots (
    account_pk  bigint NOT NULL REFERENCES accounts (pk) ON DELETE CASCADE,
    owner       text NOT NULL,
    slots       integer NOT NULL CHECK (slots >= 0),
    lease_until timestamptz NOT NULL,
    PRIMARY KEY (account_pk, owner)
);
CREATE INDEX smtp_connection_slots_owner ON smtp_connection_slots (owner);

-- The message as it goes on the wire (RFC 5322 bytes), rendered once: at enqueue when nothing
-- must be fetched at send time, else at the first attempt; retries send these same bytes.
ALTER TABLE messages ADD COLUMN rendered bytea;
