-- 0013: a rollup of `usage_minutes` by workspace, feature, key and UTC day, so series that
-- group by key (or name keys) over days or months read one row per key and day instead
-- of one per key and minute. It serves zones whose offset is zero over the range (UTC and
-- its aliases); other zones read the minutes. Statement triggers keep it exact, as 0012
-- does for the hours: inserted rows add their counts, updated rows add the difference.
CREATE TABLE usage_days (
    workspace_id text        NOT NULL,
    feature      text        NOT NULL,
    api_key_id   text        NOT NULL,
    day          timestamptz NOT NULL,
    count        bigint      NOT NULL,
    PRIMARY KEY (workspace_id, feature, day, api_key_id)
);
CREATE INDEX usage_days_key ON usage_days (workspace_id, api_key_id, day);
-- The partial days at a query's edges are read from the minutes by time alone.
CREATE INDEX usage_minutes_time ON usage_minutes (workspace_id, minute);

INSERT INTO usage_days (workspace_id, feature, api_key_id, day, count)
SELECT workspace_id, feature, api_key_id, date_trunc('day', minute, 'UTC'), sum(count)
  FROM usage_minutes
 GROUP BY 1, 2, 3, 4;

CREATE FUNCTION usage_days_add_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_days (workspace_id, feature, api_key_id, day, count)
    SELECT workspace_id, feature, api_key_id, date_trunc('day', minute, 'UTC'), sum(count)
      FROM inserted
     GROUP BY 1, 2, 3, 4
    ON CONFLICT (workspace_id, feature, day, api_key_id)
    DO UPDATE SET count = usage_days.count + excluded.count;
    RETURN NULL;
END;
$$;

CREATE FUNCTION usage_days_add_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_days (workspace_id, feature, api_key_id, day, count)
    SELECT n.workspace_id, n.feature, n.api_key_id, date_trunc('day', n.minute, 'UTC'),
           sum(n.count - o.count)
      FROM updated n
      JOIN previous o USING (workspace_id, feature, minute, api_key_id)
     GROUP BY 1, 2, 3, 4
    ON CONFLICT (workspace_id, feature, day, api_key_id)
    DO UPDATE SET count = usage_days.count + excluded.count;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_minutes_inserted_days AFTER INSERT ON usage_minutes
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_days_add_inserted();

CREATE TRIGGER usage_minutes_updated_days AFTER UPDATE ON usage_minutes
    REFERENCING OLD TABLE AS previous NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION usage_days_add_updated();
