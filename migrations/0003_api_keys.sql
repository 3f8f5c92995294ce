-- 0003: API keys.

-- Secrets are stored only as SHA-256 hashes, and never in an event: this write-side
-- table is filled before the key's creation event is appended.
CREATE TABLE api_key_secrets
(
    key_id      text        PRIMARY KEY,
    public_id   text        NOT NULL UNIQUE,
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Key tables in every process tail only the ApiKey stream from the log.
CREATE INDEX events_type_order_idx ON events (aggregate_type, transaction_id, global_position);

-- Read model of the `api_keys` projection.
CREATE TABLE api_keys
(
    id                   text        PRIMARY KEY,
    workspace_id         text        NOT NULL,
    public_id            text        NOT NULL UNIQUE,
    name                 text        NOT NULL,
    prefix               text        NOT NULL,
    masked               text        NOT NULL,
    scopes               text[]      NOT NULL,
    rate_limit_tier      text,
    ip_allowlist         text[]      NOT NULL,
    max_age_days         integer,
    expires_at           timestamptz,
    created_by           jsonb       NOT NULL,
    rotated_from         text,
    replaced_by          text,
    grace_period_ends_at timestamptz,
    expired_at           timestamptz,
    revoked_at           timestamptz,
    -- The aggregate's version (last event sequence): the ETag clients send back in If-Match.
    version              bigint      NOT NULL,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    search               tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED
);
CREATE INDEX api_keys_workspace_idx ON api_keys (workspace_id, created_at);
CREATE INDEX api_keys_search_idx ON api_keys USING gin (search);
CREATE INDEX api_keys_grace_idx ON api_keys (grace_period_ends_at) WHERE expired_at IS NULL AND revoked_at IS NULL;

-- A key's status at a moment, one definition for lists, filters and the sweeper.
CREATE FUNCTION api_key_status(k api_keys, at timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN k.revoked_at IS NOT NULL THEN 'revoked'
        WHEN k.expired_at IS NOT NULL OR k.grace_period_ends_at <= at OR k.expires_at <= at THEN 'expired'
        WHEN k.grace_period_ends_at IS NOT NULL THEN 'rotating'
        ELSE 'active'
    END
$$;

-- Usage, aggregated in memory by each process and flushed in batches (never one write
-- per request).
CREATE TABLE api_key_usage
(
    key_id       text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    last_used_at timestamptz NOT NULL,
    calls        bigint      NOT NULL
);

CREATE TABLE api_key_usage_hourly
(
    key_id       text        NOT NULL,
    workspace_id text        NOT NULL,
    hour         timestamptz NOT NULL,
    calls        bigint      NOT NULL,
    PRIMARY KEY (key_id, hour)
);
CREATE INDEX api_key_usage_hourly_workspace_idx ON api_key_usage_hourly (workspace_id, hour);
