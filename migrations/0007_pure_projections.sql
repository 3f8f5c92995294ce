-- 0007: projections are pure folds of the log.
--
-- Creators' names are joined when read, not copied when projected.
--
-- A projection is a pure fold of the log: applying an event reads nothing but the event
-- and the projection's own tables, so a rebuild gives the same rows. Until now record
-- and API key projections copied the creator's display name from the users and api_keys
-- read models into `created_by` while applying (`actor_name()`), which made their rows
-- depend on when they were built. From now on `created_by` holds `{type, id}` as the
-- event states it, and lists add the name as they read: `with_actor_name(created_by)`
-- (one primary-key lookup per item of the page, never per match). Rows written before
-- carry a `name` already; the read-time one replaces it.
CREATE FUNCTION with_actor_name(created_by jsonb) RETURNS jsonb LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT created_by || jsonb_build_object('name', actor_name(created_by ->> 'id'))
$$;

-- Read models keep their consistency by folding the log, not by foreign keys: a deleted
-- workspace's members are deleted by the identity projection itself, so a rebuild into
-- plain tables (which carry no foreign keys) folds the same way.
ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_workspace_id_fkey;
