-- Provider feedback, continued: a row key for secret rotation, and the notifications already
-- applied (providers retry and may deliver one notification twice).
ALTER TABLE provider_feedback ADD COLUMN pk bigint GENERATED ALWAYS AS IDENTITY UNIQUE;

CREATE TABLE provider_feedback_seen (
    tenant_id  text NOT NULL,
    provider   text NOT NULL,
    event_key  text NOT NULL,
    seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider, event_key)
);
CREATE INDEX provider_feedback_seen_age ON provider_feedback_seen (seen_at);
