-- 0014: usage that arrives as events, SEO reports, and the pixel's per-IP window.

-- Usage recorded as events (`POST /entitlements/usage`, pixel events) lands in
-- usage_minutes with no key (api_key_id = ''); a rebuild of that projection deletes and
-- re-inserts those rows, so the rollups learn to subtract deleted rows too.
CREATE FUNCTION usage_hours_subtract_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hours (workspace_id, feature, hour, count)
    SELECT workspace_id, feature, date_trunc('hour', minute, 'UTC'), -sum(count)
      FROM deleted
     GROUP BY 1, 2, 3
    ON CONFLICT (workspace_id, feature, hour)
    DO UPDATE SET count = usage_hours.count + excluded.count;
    RETURN NULL;
END;
$$;

CREATE FUNCTION usage_days_subtract_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_days (workspace_id, feature, api_key_id, day, count)
    SELECT workspace_id, feature, api_key_id, date_trunc('day', minute, 'UTC'), -sum(count)
      FROM deleted
     GROUP BY 1, 2, 3, 4
    ON CONFLICT (workspace_id, feature, day, api_key_id)
    DO UPDATE SET count = usage_days.count + excluded.count;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_minutes_deleted_hours AFTER DELETE ON usage_minutes
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hours_subtract_deleted();

CREATE TRIGGER usage_minutes_deleted_days AFTER DELETE ON usage_minutes
    REFERENCING OLD TABLE AS deleted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_days_subtract_deleted();

-- Each URL's latest SEO report, and that report's issues.
CREATE TABLE seo_pages (
    workspace_id text        NOT NULL,
    url          text        NOT NULL,
    report_id    text        NOT NULL,
    scores       jsonb       NOT NULL,
    issue_count  integer     NOT NULL,
    reported_at  timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, url)
);

CREATE TABLE seo_issues (
    -- `<report_id>.<position>`, zero-padded: unique, and the list's tie-breaker.
    id            text        PRIMARY KEY,
    workspace_id  text        NOT NULL,
    url           text        NOT NULL,
    report_id     text        NOT NULL,
    position      integer     NOT NULL,
    type          text        NOT NULL,
    severity      text        NOT NULL,
    severity_rank smallint    NOT NULL,
    element       text,
    reported_at   timestamptz NOT NULL
);
-- Listed most severe first by default.
CREATE INDEX seo_issues_list ON seo_issues (workspace_id, severity_rank, id);
CREATE INDEX seo_issues_url ON seo_issues (workspace_id, url);

-- The pixel's rate limit: the accepted requests of each client IP in the last minute
-- (a sliding log, exact on any number of nodes: admission locks the IP's row).
CREATE TABLE pixel_rate (
    ip   inet          PRIMARY KEY,
    hits timestamptz[] NOT NULL
);

-- Admits one request from `client` if fewer than `max_hits` were admitted in the
-- `window_len` before now (the window slides: no reset on the minute). Returns NULL when
-- admitted, else when the oldest admitted request leaves the window.
CREATE FUNCTION pixel_admit(client inet, max_hits integer, window_len interval)
RETURNS timestamptz LANGUAGE plpgsql AS $$
DECLARE
    t      timestamptz := clock_timestamp();
    recent timestamptz[];
BEGIN
    INSERT INTO pixel_rate (ip, hits) VALUES (client, '{}') ON CONFLICT (ip) DO NOTHING;
    PERFORM 1 FROM pixel_rate WHERE ip = client FOR UPDATE;
    SELECT coalesce(array_agg(h ORDER BY h), '{}') INTO recent
      FROM pixel_rate p, unnest(p.hits) AS h
     WHERE p.ip = client AND h > t - window_len;
    IF cardinality(recent) >= max_hits THEN
        UPDATE pixel_rate SET hits = recent WHERE ip = client;
        RETURN recent[1] + window_len;
    END IF;
    UPDATE pixel_rate SET hits = recent || t WHERE ip = client;
    RETURN NULL;
END;
$$;
