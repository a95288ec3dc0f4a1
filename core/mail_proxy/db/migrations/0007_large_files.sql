-- Large-file offload (SPEC section 6): one row per uploaded attachment, until its object is
-- deleted. Times are epoch seconds. No foreign keys on purpose: a file outlives its message's
-- retention and its tenant's deletion until the cleanup job has removed the object.
CREATE TABLE large_files (
    file_id          text PRIMARY KEY,
    tenant_id        text NOT NULL,
    message_pk       bigint,
    part_index       integer,
    storage_url      text NOT NULL,
    object_path      text NOT NULL,
    filename         text NOT NULL,
    content_type     text,
    size_bytes       bigint NOT NULL,
    sha256           text NOT NULL,
    created_at       bigint NOT NULL,
    -- the link's expiry (file_ttl_days after upload)
    expires_at       bigint NOT NULL,
    -- lifespan_after_download_days, in seconds; the first download starts it
    lifespan_seconds bigint,
    first_download_at bigint,
    download_count   bigint NOT NULL DEFAULT 0,
    -- when the cleanup job deletes the object: expires_at, or earlier after a first download
    delete_after     bigint NOT NULL,
    delete_failures  integer NOT NULL DEFAULT 0
);
-- The cleanup job asks for due files; a retry of a message reuses the upload of its part.
CREATE INDEX large_files_due ON large_files (delete_after);
CREATE INDEX large_files_message_part ON large_files (message_pk, part_index);
