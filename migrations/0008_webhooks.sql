-- 0008: outbound webhooks.
--
-- Three owners, kept apart:
-- - the `webhooks` projection keeps `webhooks`, the read model `GET /webhooks` serves
--   (a pure fold of `Webhook` events; rebuildable);
-- - the application writes `webhook_secrets` beside the log, like `api_key_secrets`:
--   signing secrets sealed with an AEAD, never in an event;
-- - the dispatcher keeps the rest: `webhook_routes` (its own fold of `Webhook` events,
--   in the same transactions as the deliveries it fans out), `webhook_messages` (each
--   event's public body, the exact bytes every delivery of it signs),
--   `webhook_deliveries` (one row per (endpoint, event), ever), `webhook_attempts`, and
--   `webhook_stats` (counters, failure window, rate-limit pacing).

CREATE TABLE webhooks (
    id text PRIMARY KEY,
    workspace_id text NOT NULL,
    url text NOT NULL,
    description text,
    events text[] NOT NULL,
    is_active boolean NOT NULL,
    disabled_reason text,
    rate_limit integer,
    secret_fingerprint text NOT NULL,
    created_by jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    version bigint NOT NULL
);
CREATE INDEX webhooks_workspace ON webhooks (workspace_id, created_at DESC, id DESC);

CREATE TABLE webhook_secrets (
    endpoint_id text NOT NULL,
    -- First bytes of the secret's SHA-256, hex: what events carry.
    fingerprint text NOT NULL,
    -- nonce || ciphertext || tag (ChaCha20-Poly1305, the endpoint id as associated data).
    sealed bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Set when a rotation replaces it: it signs until then. NULL: current.
    valid_until timestamptz,
    PRIMARY KEY (endpoint_id, fingerprint)
);

CREATE TABLE webhook_routes (
    endpoint_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL,
    rate_limit integer,
    active boolean NOT NULL
);
CREATE INDEX webhook_routes_workspace ON webhook_routes (workspace_id) WHERE active;

CREATE TABLE webhook_messages (
    event_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    event_type text NOT NULL,
    body text NOT NULL,
    recorded_at timestamptz NOT NULL
);

CREATE TABLE webhook_deliveries (
    id text PRIMARY KEY,
    endpoint_id text NOT NULL,
    workspace_id text NOT NULL,
    event_id text NOT NULL REFERENCES webhook_messages (event_id),
    event_type text NOT NULL,
    -- pending | retrying | success | failed | dead
    status text NOT NULL,
    -- Attempts made in all; `round_base` of them before the current queueing (a
    -- retry, recover or replay starts the schedule again).
    attempt integer NOT NULL DEFAULT 0,
    round_base integer NOT NULL DEFAULT 0,
    -- When it is due; while a worker holds it, when its lease ends.
    next_attempt_at timestamptz,
    response_code integer,
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'retrying');
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

CREATE TABLE webhook_attempts (
    delivery_id text NOT NULL,
    number integer NOT NULL,
    status_code integer,
    duration_ms integer NOT NULL,
    error text,
    response_body text,
    attempted_at timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, number)
);

CREATE TABLE webhook_stats (
    endpoint_id text PRIMARY KEY,
    success_count bigint NOT NULL DEFAULT 0,
    failure_count bigint NOT NULL DEFAULT 0,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_delivery_at timestamptz,
    last_success_at timestamptz,
    -- The first failure since the last success: the disable window runs from here.
    failing_since timestamptz,
    -- Rate limit: when the next delivery may start (GCRA's theoretical arrival time).
    paced_until timestamptz
);
