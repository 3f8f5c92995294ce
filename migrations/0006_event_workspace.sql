-- 0006: the workspace on every event.
--
-- Since this migration every event's metadata names the workspace it belongs to
-- (`workspace_id`, set from the aggregate when the command commits; absent for users,
-- who belong to no one workspace). Audit queries, webhook fan-out and replay select a
-- workspace's events in commit order through this index.
CREATE INDEX events_workspace_idx
    ON events ((metadata ->> 'workspace_id'), transaction_id, global_position)
    WHERE metadata ? 'workspace_id';

-- Events stored before it are never rewritten (the log is append-only): they are read
-- through this upcaster, which derives the workspace from what the event itself says
-- (a workspace's own events; a payload naming `workspace_id`) and otherwise from its
-- aggregate's first event (an API key's later events). Readers call it for every row;
-- for new events it returns the metadata's value at once.
CREATE FUNCTION event_workspace(e events) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT coalesce(
        e.metadata ->> 'workspace_id',
        CASE WHEN e.aggregate_type = 'Workspace' THEN e.aggregate_id END,
        -- An enum variant with fields is `{"Variant": {...}}`; a unit one is a string.
        CASE WHEN jsonb_typeof(e.payload) = 'object' THEN
            (SELECT v ->> 'workspace_id' FROM jsonb_each(e.payload) AS p(k, v)
              WHERE jsonb_typeof(v) = 'object' LIMIT 1)
        END,
        CASE WHEN e.aggregate_type <> 'User' THEN
            (SELECT v ->> 'workspace_id'
               FROM events f, jsonb_each(CASE WHEN jsonb_typeof(f.payload) = 'object'
                                              THEN f.payload ELSE '{}' END) AS p(k, v)
              WHERE f.aggregate_type = e.aggregate_type AND f.aggregate_id = e.aggregate_id
                AND f.sequence = 1 AND jsonb_typeof(v) = 'object'
              LIMIT 1)
        END
    )
$$;
