-- 0010: signed checkpoints of the audit tree (C2SP tlog-checkpoint), kept forever so an
-- auditor can ask for the consistency of any two.
CREATE TABLE audit_checkpoints (
    tree_size bigint PRIMARY KEY,
    root bytea NOT NULL,
    origin text NOT NULL,
    key_id text NOT NULL,
    public_key bytea NOT NULL,
    signature bytea NOT NULL,
    checkpoint text NOT NULL,
    signed_at timestamptz NOT NULL DEFAULT now()
);
