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
-- It replaces the per-key hourly table of 0003: its history moves here, each hour's
-- calls on the hour's first minute, and the flush no longer writes it.
INSERT INTO usage_minutes (workspace_id, feature, api_key_id, minute, count)
SELECT workspace_id, 'api_calls', key_id, hour, calls FROM api_key_usage_hourly;
DROP TABLE api_key_usage_hourly;

-- Queries that name keys (`api_key_id=…`) read only those keys' rows.
CREATE INDEX usage_minutes_key ON usage_minutes (workspace_id, api_key_id, minute);
