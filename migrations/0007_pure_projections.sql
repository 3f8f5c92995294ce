-- 0007: projections are pure folds of the log.
--
-- Creators' names are joined when read, not copied when projected: record and API key
-- projections used to copy the creator's display name from the users and api_keys read
-- models into `created_by` while applying (`actor_name()`), which made their rows depend
-- on when they were built. `created_by` now holds `{type, id}` as the event states it,
-- and list queries add the name as they read (`with_actor_name!` in
-- projections/src/list.rs: one primary-key lookup per item of the page, as a plain
-- expression rather than a SQL function, which PostgreSQL would parse on every
-- execution). Rows written before carry a `name` already; the read-time one replaces it.
-- Nothing to migrate for that.

-- Read models keep their consistency by folding the log, not by foreign keys: a deleted
-- workspace's members are deleted by the identity projection itself, so a rebuild into
-- plain tables (which carry no foreign keys) folds the same way.
ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_workspace_id_fkey;
