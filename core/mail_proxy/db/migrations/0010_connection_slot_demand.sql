-- A sender that asked for connection slots and got fewer than it had ready work for says so
-- until `wanting_until` (epoch seconds), renewed while it keeps asking. Grants then honour a fair
-- share of the account's cap, and senders holding more than their share give connections back
-- (see mail_proxy.db.connection_slots).
ALTER TABLE smtp_connection_slots
    ADD COLUMN wanting_until double precision NOT NULL DEFAULT 0;
