-- 0009: the audit log as an RFC 9162 Merkle tree.
--
-- The `audit_log` subscriber gives each event, in commit order, its gap-free
-- `log_index` and its leaf hash (SHA-256 over 0x00 and the event's canonical bytes, see
-- docs/audit.md), and keeps the root of every complete perfect subtree of two or more
-- leaves in `audit_nodes`, so a proof needs O(log n) lookups and no rehashing. Rows are
-- only ever appended.
CREATE TABLE audit_leaves (
    log_index bigint PRIMARY KEY,
    transaction_id xid8 NOT NULL,
    global_position bigint NOT NULL UNIQUE,
    workspace_id text,
    leaf bytea NOT NULL
);
CREATE INDEX audit_leaves_workspace ON audit_leaves (workspace_id, log_index);

CREATE TABLE audit_nodes (
    level integer NOT NULL CHECK (level >= 1),
    index bigint NOT NULL,
    hash bytea NOT NULL,
    PRIMARY KEY (level, index)
);
