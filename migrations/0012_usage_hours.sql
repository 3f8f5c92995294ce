-- 0012: a rollup of `usage_minutes` by workspace, feature and UTC hour, so whole-workspace
-- `/usage` series read 24 rows a day instead of one per key and minute. Statement
-- triggers keep it exact whoever writes the minutes (the flush's upserts included):
-- inserted rows add their counts, updated rows add the difference.
CREATE TABLE usage_hours (
    workspace_id text        NOT NULL,
    feature      text        NOT NULL,
    hour         timestamptz NOT NULL,
    count        bigint      NOT NULL,
    PRIMARY KEY (workspace_id, feature, hour)
);

INSERT INTO usage_hours (workspace_id, feature, hour, count)
SELECT workspace_id, feature, date_trunc('hour', minute, 'UTC'), sum(count)
  FROM usage_minutes
 GROUP BY 1, 2, 3;

CREATE FUNCTION usage_hours_add_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hours (workspace_id, feature, hour, count)
    SELECT workspace_id, feature, date_trunc('hour', minute, 'UTC'), sum(count)
      FROM inserted
     GROUP BY 1, 2, 3
    ON CONFLICT (workspace_id, feature, hour)
    DO UPDATE SET count = usage_hours.count + excluded.count;
    RETURN NULL;
END;
$$;

CREATE FUNCTION usage_hours_add_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_hours (workspace_id, feature, hour, count)
    SELECT n.workspace_id, n.feature, date_trunc('hour', n.minute, 'UTC'), sum(n.count - o.count)
      FROM updated n
      JOIN previous o USING (workspace_id, feature, minute, api_key_id)
     GROUP BY 1, 2, 3
    ON CONFLICT (workspace_id, feature, hour)
    DO UPDATE SET count = usage_hours.count + excluded.count;
    RETURN NULL;
END;
$$;

CREATE TRIGGER usage_minutes_inserted AFTER INSERT ON usage_minutes
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hours_add_inserted();

CREATE TRIGGER usage_minutes_updated AFTER UPDATE ON usage_minutes
    REFERENCING OLD TABLE AS previous NEW TABLE AS updated
    FOR EACH STATEMENT EXECUTE FUNCTION usage_hours_add_updated();
