-- 0002: identity. Write-side tables that events must not carry, and the identity read models.

-- Timestamps in API responses: RFC 3339, UTC, millisecond precision.
-- STABLE, not IMMUTABLE: to_char is STABLE, and PostgreSQL inlines a SQL function only
-- when its body honours the declared volatility; one that is not inlined re-parses its
-- body in every query that calls it.
CREATE FUNCTION rfc3339(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- Uniqueness that an event-sourced write side cannot check by itself (emails, slugs):
-- a claim is inserted before the command runs and released if the command fails.
CREATE TABLE unique_claims
(
    kind       text        NOT NULL,
    value      text        NOT NULL,
    owner_id   text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);

-- Password hashes are secrets: they live here, never in an event.
CREATE TABLE user_credentials
(
    user_id       text        PRIMARY KEY,
    email         text        NOT NULL UNIQUE,
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Opaque session tokens (pst_...), stored as SHA-256 hashes. Ephemeral credentials, not
-- domain state, so not event-sourced; logins and logouts are audited by the events of
-- the principal they belong to.
CREATE TABLE sessions
(
    token_hash  bytea       PRIMARY KEY,
    user_id     text,
    api_key_id  text,
    workspace_id text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    CHECK ((user_id IS NULL) <> (api_key_id IS NULL))
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_api_key_idx ON sessions (api_key_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);

-- Read models of the `identity` projection.
CREATE TABLE users
(
    id         text        PRIMARY KEY,
    email      text        NOT NULL,
    name       text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE workspaces
(
    id         text        PRIMARY KEY,
    name       text        NOT NULL,
    slug       text        NOT NULL,
    tier       text        NOT NULL,
    settings   jsonb       NOT NULL,
    pixel_id   text        NOT NULL,
    owner_id   text        NOT NULL,
    created_by jsonb       NOT NULL,
    -- The aggregate's version (last event sequence): the ETag clients send back in If-Match.
    version    bigint      NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    search     tsvector GENERATED ALWAYS AS (to_tsvector('simple', name || ' ' || slug)) STORED
);
CREATE UNIQUE INDEX workspaces_slug_idx ON workspaces (slug);
CREATE UNIQUE INDEX workspaces_pixel_idx ON workspaces (pixel_id);
CREATE INDEX workspaces_created_idx ON workspaces (created_at);
CREATE INDEX workspaces_search_idx ON workspaces USING gin (search);

CREATE TABLE workspace_members
(
    workspace_id text        NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      text        NOT NULL,
    role         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user_idx ON workspace_members (user_id, created_at);
