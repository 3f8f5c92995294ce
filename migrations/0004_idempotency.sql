-- 0004: Idempotency-Key. The first response to a (principal, key) pair is kept for 24 h
-- and replayed to repeats; `request_hash` tells a repeat from a different request that
-- reuses the key.
CREATE TABLE idempotency_keys
(
    principal_id  text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    -- NULL while the first request is still running.
    status_code   smallint,
    content_type  text,
    response_body bytea,
    -- A request still "running" after this is taken to have died with its process.
    locked_until  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (principal_id, key)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
