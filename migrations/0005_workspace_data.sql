-- 0005: read models of workspace data (projects, tasks, contacts, companies, deals,
-- documents), one table per projection, plus live counts per workspace for tier limits.
--
-- Rows are deleted when their record is; the events keep the history. `search` is the
-- full-text vector lists match `search=` against: titles weigh most, then descriptions
-- and bodies, then tags.

-- array_to_string is STABLE in general (element output functions may be); on text[] it
-- is not, and a generated column needs an IMMUTABLE expression.
CREATE FUNCTION tags_text(tags text[]) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT array_to_string(tags, ' ')
$$;

-- Who an actor id names, for `created_by` in read models: a user's name (else email),
-- or an API key's name. Resolved when the projection applies the event, so lists need
-- no joins.
CREATE FUNCTION actor_name(actor_id text) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT coalesce(name, email) FROM users WHERE id = actor_id
    UNION ALL SELECT name FROM api_keys WHERE id = actor_id
    LIMIT 1
$$;

CREATE TABLE projects
(
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    name         text        NOT NULL,
    description  text,
    status       text        NOT NULL,
    owner_id     text,
    tags         text[]      NOT NULL,
    created_by   jsonb       NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', name), 'A')
        || setweight(to_tsvector('simple', coalesce(description, '')), 'B')
        || setweight(to_tsvector('simple', tags_text(tags)), 'C')) STORED
);
CREATE INDEX projects_workspace_idx ON projects (workspace_id, created_at);
CREATE INDEX projects_status_idx ON projects (workspace_id, status, created_at);
CREATE INDEX projects_search_idx ON projects USING gin (search);
CREATE INDEX projects_tags_idx ON projects USING gin (tags);

CREATE TABLE tasks
(
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    project_id   text        NOT NULL,
    title        text        NOT NULL,
    description  text,
    status       text        NOT NULL,
    priority     text        NOT NULL,
    assignee_id  text,
    due_date     date,
    tags         text[]      NOT NULL,
    created_by   jsonb       NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A')
        || setweight(to_tsvector('simple', coalesce(description, '')), 'B')
        || setweight(to_tsvector('simple', tags_text(tags)), 'C')) STORED
);
CREATE INDEX tasks_workspace_idx ON tasks (workspace_id, created_at);
CREATE INDEX tasks_status_idx ON tasks (workspace_id, status, created_at);
CREATE INDEX tasks_project_idx ON tasks (workspace_id, project_id, created_at);
CREATE INDEX tasks_assignee_idx ON tasks (workspace_id, assignee_id) WHERE assignee_id IS NOT NULL;
CREATE INDEX tasks_search_idx ON tasks USING gin (search);
CREATE INDEX tasks_tags_idx ON tasks USING gin (tags);

CREATE TABLE companies
(
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    name         text        NOT NULL,
    domain       text,
    created_by   jsonb       NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', name), 'A')
        || setweight(to_tsvector('simple', coalesce(domain, '') || ' ' || translate(coalesce(domain, ''), '.', ' ')), 'B')) STORED
);
CREATE INDEX companies_workspace_idx ON companies (workspace_id, created_at);
CREATE INDEX companies_search_idx ON companies USING gin (search);

CREATE TABLE contacts
(
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    name         text        NOT NULL,
    email        text,
    phone        text,
    company_id   text,
    created_by   jsonb       NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', name), 'A')
        -- An email is one token to the parser; its parts are added so `engines` finds
        -- ada@engines.example.
        || setweight(to_tsvector('simple', coalesce(email, '') || ' ' || translate(coalesce(email, ''), '@.', '  ')
                                           || ' ' || coalesce(phone, '')), 'B')) STORED
);
CREATE INDEX contacts_workspace_idx ON contacts (workspace_id, created_at);
CREATE INDEX contacts_company_idx ON contacts (workspace_id, company_id) WHERE company_id IS NOT NULL;
CREATE INDEX contacts_search_idx ON contacts USING gin (search);

CREATE TABLE deals
(
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    name         text        NOT NULL,
    amount_cents bigint      NOT NULL,
    currency     text        NOT NULL,
    stage        text        NOT NULL,
    company_id   text,
    contact_id   text,
    created_by   jsonb       NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (to_tsvector('simple', name)) STORED
);
CREATE INDEX deals_workspace_idx ON deals (workspace_id, created_at);
CREATE INDEX deals_stage_idx ON deals (workspace_id, stage, created_at);
CREATE INDEX deals_company_idx ON deals (workspace_id, company_id) WHERE company_id IS NOT NULL;
CREATE INDEX deals_contact_idx ON deals (workspace_id, contact_id) WHERE contact_id IS NOT NULL;
CREATE INDEX deals_search_idx ON deals USING gin (search);

CREATE TABLE documents
(
    id           text        PRIMARY KEY,
    workspace_id text        NOT NULL,
    title        text        NOT NULL,
    body         text        NOT NULL,
    tags         text[]      NOT NULL,
    created_by   jsonb       NOT NULL,
    version      bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL,
    search       tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A')
        || setweight(to_tsvector('simple', body), 'B')
        || setweight(to_tsvector('simple', tags_text(tags)), 'C')) STORED
);
CREATE INDEX documents_workspace_idx ON documents (workspace_id, created_at);
CREATE INDEX documents_search_idx ON documents USING gin (search);
CREATE INDEX documents_tags_idx ON documents USING gin (tags);

-- Live items per workspace and feature (`projects`, `tasks`, ...), kept by the same
-- projections in the same transactions, so a tier-limit check is one indexed read.
CREATE TABLE workspace_record_counts
(
    workspace_id text   NOT NULL,
    feature      text   NOT NULL,
    count        bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (workspace_id, feature)
);
