-- 0011: metered usage by minute, the rows `/usage` rolls up into minutes, hours, days
-- and months in any time zone. Each node counts calls in memory and adds its counts here
-- every few seconds (never one write per request); rows only grow.
CREATE TABLE usage_minutes (
    workspace_id text        NOT NULL,
    feature      text        NOT NULL,
    api_key_id   text        NOT NULL,
    minute       timestamptz NOT NULL,
    count        bigint      NOT NULL CHECK (count >= 0),
    PRIMARY KEY (workspace_id, feature, minute, api_key_id)
);
-- Queries that name keys (`api_key_id=…`) read only those keys' rows.
CREATE INDEX usage_minutes_key ON usage_minutes (workspace_id, api_key_id, minute);
