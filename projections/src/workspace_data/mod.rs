//! Read models of workspace data: one table and one projection per kind, all built the
//! same way by [`RecordProjection`] from a [`RecordTable`] description.
//!
//! Record events carry the whole resulting state, so each projection is a fold: a
//! creation inserts the row, an update overwrites its columns, a deletion removes it.
//! Creations and deletions also move the workspace's live count of that kind
//! (`workspace_record_counts`), in the same statement, for tier limits.
//!
//! Layout: [`projects`], [`tasks`], [`contacts`], [`companies`], [`deals`],
//! [`documents`]: each names its table and how its columns come from the event's fields.

use std::marker::PhantomData;

use chrono::{DateTime, SubsecRound, Utc};
use pulsar_domain::record::{Record, RecordEvent, RecordKind};
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

pub mod companies;
pub mod contacts;
pub mod deals;
pub mod documents;
pub mod projects;
pub mod tasks;

/// A read-model table of one record kind.
pub trait RecordTable: Send + Sync + 'static {
    type Kind: RecordKind;
    /// The table, the subscriber, and the entitlement feature: all one name.
    const NAME: &'static str;
    /// `[Kind::TYPE]`: the one aggregate type the projection reads.
    const TYPES: &'static [&'static str];
    /// Each column with its SQL expression over `f`, the event's fields as `jsonb`.
    const COLUMNS: &'static [(&'static str, &'static str)];
}

/// `include=tags` for a collection with a `tags text[]` column: each tag with the number
/// of the workspace's items of that collection carrying it.
macro_rules! tags_include {
    ($table:literal, $alias:literal) => {
        crate::list::Include {
            name: "tags",
            sql: concat!(
                "(SELECT coalesce(jsonb_agg(jsonb_build_object('name', tg.tag, 'count', ",
                "(SELECT count(*) FROM ",
                $table,
                " x WHERE x.workspace_id = ",
                $alias,
                ".workspace_id AND x.tags @> ARRAY[tg.tag])) ORDER BY tg.n), '[]'::jsonb) ",
                "FROM unnest(",
                $alias,
                ".tags) WITH ORDINALITY AS tg(tag, n))"
            ),
        }
    };
}
pub(crate) use tags_include;

/// An include of the workspace member named by `$alias.$column` (`null` when they are
/// no longer a member).
macro_rules! member_include {
    ($name:literal, $alias:literal, $column:literal) => {
        crate::list::Include {
            name: $name,
            sql: concat!(
                "(SELECT jsonb_build_object('id', u.id, 'name', u.name, 'role', m.role) ",
                "FROM workspace_members m JOIN users u ON u.id = m.user_id ",
                "WHERE m.workspace_id = ",
                $alias,
                ".workspace_id AND m.user_id = ",
                $alias,
                ".",
                $column,
                ")"
            ),
        }
    };
}
pub(crate) use member_include;

/// SQL for a `text[]` column from a JSON array of strings.
pub const TAGS: &str = "ARRAY(SELECT jsonb_array_elements_text(f->'tags'))";

/// Keeps the read model of one record kind.
#[derive(Debug)]
pub struct RecordProjection<T> {
    insert: String,
    update: String,
    delete: String,
    table: PhantomData<T>,
}

impl<T: RecordTable> Default for RecordProjection<T> {
    fn default() -> Self {
        let table = T::NAME;
        let columns: Vec<&str> = T::COLUMNS.iter().map(|(c, _)| *c).collect();
        let exprs: Vec<&str> = T::COLUMNS.iter().map(|(_, e)| *e).collect();
        let (columns, exprs) = (columns.join(", "), exprs.join(", "));
        // Any number of creations in one statement (a batch's consecutive ones). The
        // creator is stored as the event states it; lists add the name as they read.
        let insert = format!(
            "WITH created AS (
                INSERT INTO {table} (id, workspace_id, created_by, version, created_at, updated_at, {columns})
                SELECT e.id, e.workspace_id,
                       jsonb_build_object('type', e.actor_type, 'id', e.actor_id),
                       e.version, e.at, e.at, {exprs}
                  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                              $6::timestamptz[], $7::jsonb[])
                       AS e(id, workspace_id, actor_type, actor_id, version, at, f)
                RETURNING workspace_id)
             INSERT INTO workspace_record_counts (workspace_id, feature, count)
             SELECT workspace_id, '{table}', count(*) FROM created GROUP BY workspace_id
             ON CONFLICT (workspace_id, feature)
             DO UPDATE SET count = workspace_record_counts.count + EXCLUDED.count"
        );
        // A run of changes in one statement; each row gets the last change of its id.
        let update = format!(
            "UPDATE {table} t
                SET ({columns}) = (SELECT {exprs} FROM (SELECT u.f AS f) AS event),
                    version = u.version, updated_at = u.at
               FROM unnest($1::text[], $2::jsonb[], $3::bigint[], $4::timestamptz[])
                    AS u(id, f, version, at)
              WHERE t.id = u.id"
        );
        let delete = format!(
            "WITH deleted AS (DELETE FROM {table} WHERE id = ANY($1) RETURNING workspace_id)
             UPDATE workspace_record_counts c SET count = c.count - d.n
               FROM (SELECT workspace_id, count(*) AS n FROM deleted GROUP BY workspace_id) d
              WHERE c.workspace_id = d.workspace_id AND c.feature = '{table}'"
        );
        Self {
            insert,
            update,
            delete,
            table: PhantomData,
        }
    }
}

/// Creations gathered for one multi-row insert.
#[derive(Default)]
struct Creations {
    ids: Vec<String>,
    workspaces: Vec<String>,
    actor_types: Vec<&'static str>,
    actor_ids: Vec<String>,
    versions: Vec<i64>,
    at: Vec<DateTime<Utc>>,
    fields: Vec<serde_json::Value>,
}

/// A run of consecutive events of one kind, applied as one statement.
enum Run {
    Creations(Creations),
    /// By id, the last state of each (an update carries the whole state, so the last
    /// of a run is what the run leaves).
    Updates(std::collections::HashMap<String, (serde_json::Value, i64, DateTime<Utc>)>),
    Deletions(Vec<String>),
}

impl<T: RecordTable> RecordProjection<T> {
    async fn flush(&self, conn: &mut PgConnection, run: Run) -> Result<(), ProjectionError> {
        match run {
            Run::Creations(c) if !c.ids.is_empty() => {
                sqlx::query(&self.insert)
                    .bind(c.ids)
                    .bind(c.workspaces)
                    .bind(c.actor_types)
                    .bind(c.actor_ids)
                    .bind(c.versions)
                    .bind(c.at)
                    .bind(c.fields)
                    .execute(conn)
                    .await?;
            }
            Run::Updates(updates) if !updates.is_empty() => {
                let mut ids = Vec::with_capacity(updates.len());
                let mut fields = Vec::with_capacity(updates.len());
                let mut versions = Vec::with_capacity(updates.len());
                let mut at = Vec::with_capacity(updates.len());
                for (id, (f, version, when)) in updates {
                    ids.push(id);
                    fields.push(f);
                    versions.push(version);
                    at.push(when);
                }
                sqlx::query(&self.update)
                    .bind(ids)
                    .bind(fields)
                    .bind(versions)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
            Run::Deletions(ids) if !ids.is_empty() => {
                sqlx::query(&self.delete).bind(ids).execute(conn).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Adds one event to the current run, first flushing the run if the event is of
    /// another kind, so that runs apply in log order.
    async fn step(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
        run: &mut Run,
    ) -> Result<(), ProjectionError> {
        if !T::TYPES.contains(&event.aggregate_type.as_str()) {
            return Ok(());
        }
        let id = &event.aggregate_id;
        let at = event.recorded_at.trunc_subsecs(3);
        let payload = event.decode::<Record<T::Kind>>()?.payload;
        let same_kind = matches!(
            (&payload, &*run),
            (RecordEvent::Created { .. }, Run::Creations(_))
                | (RecordEvent::Updated { .. }, Run::Updates(_))
                | (RecordEvent::Deleted { .. }, Run::Deletions(_))
        );
        if !same_kind {
            let next = match &payload {
                RecordEvent::Created { .. } => Run::Creations(Creations::default()),
                RecordEvent::Updated { .. } => Run::Updates(Default::default()),
                RecordEvent::Deleted { .. } => Run::Deletions(Vec::new()),
            };
            self.flush(conn, std::mem::replace(run, next)).await?;
        }
        match (payload, run) {
            (
                RecordEvent::Created {
                    workspace_id,
                    fields,
                    created_by,
                },
                Run::Creations(pending),
            ) => {
                pending.ids.push(id.clone());
                pending.workspaces.push(workspace_id);
                pending.actor_types.push(created_by.actor_type.as_str());
                pending.actor_ids.push(created_by.id);
                pending.versions.push(event.sequence);
                pending.at.push(at);
                pending.fields.push(fields_json(&fields)?);
            }
            (RecordEvent::Updated { fields, .. }, Run::Updates(pending)) => {
                pending.insert(id.clone(), (fields_json(&fields)?, event.sequence, at));
            }
            (RecordEvent::Deleted { .. }, Run::Deletions(pending)) => pending.push(id.clone()),
            _ => {
                return Err(ProjectionError::Decode(
                    "a run of one kind received another".into(),
                ))
            }
        }
        Ok(())
    }
}

fn fields_json<T: serde::Serialize>(fields: &T) -> Result<serde_json::Value, ProjectionError> {
    serde_json::to_value(fields).map_err(|e| ProjectionError::Decode(e.to_string()))
}

impl<T: RecordTable> Projection for RecordProjection<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        T::TYPES
    }

    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables {
            owned: vec![T::NAME],
            shared: vec![(
                "workspace_record_counts",
                format!("feature = '{}'", T::NAME),
            )],
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// Set-based: each run of consecutive creations, changes or deletions in a batch
    /// is one statement (a multi-row insert, an update from an array, a delete by ids),
    /// the runs in log order.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut run = Run::Creations(Creations::default());
        for event in events {
            self.step(conn, event, &mut run).await?;
        }
        self.flush(conn, run).await
    }
}

/// A referenced id to look up in a workspace: `table.column = id`, scoped by the table's
/// `workspace_id`.
#[derive(Debug, Clone, Copy)]
pub struct Reference<'a> {
    pub table: &'static str,
    pub column: &'static str,
    pub id: &'a str,
}

/// What a write needs to know about its workspace.
#[derive(Debug, Clone)]
pub struct Precheck {
    /// The workspace's tier, as stored.
    pub tier: String,
    /// Live items of the feature.
    pub count: i64,
    /// For each reference asked about, in order: whether it names a live row there.
    pub live: Vec<bool>,
}

/// In one round trip: the workspace's tier, its live count of `feature`, and which of
/// `references` are live in it; `None` when the workspace does not exist.
pub async fn precheck(
    pool: &sqlx::PgPool,
    workspace_id: &str,
    feature: &str,
    references: &[Reference<'_>],
) -> Result<Option<Precheck>, sqlx::Error> {
    use sqlx::{Postgres, QueryBuilder, Row};
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT w.tier, coalesce((SELECT c.count FROM workspace_record_counts c
                                   WHERE c.workspace_id = w.id AND c.feature = ",
    );
    qb.push_bind(feature.to_string()).push("), 0) AS count");
    for (i, reference) in references.iter().enumerate() {
        qb.push(format_args!(
            ", EXISTS (SELECT 1 FROM {} WHERE workspace_id = w.id AND {} = ",
            reference.table, reference.column
        ))
        .push_bind(reference.id.to_string())
        .push(format_args!(") AS ref{i}"));
    }
    qb.push(" FROM workspaces w WHERE w.id = ")
        .push_bind(workspace_id.to_string());
    let Some(row) = qb.build().fetch_optional(pool).await? else {
        return Ok(None);
    };
    let live = (0..references.len())
        .map(|i| row.try_get::<bool, _>(format!("ref{i}").as_str()))
        .collect::<Result<_, _>>()?;
    Ok(Some(Precheck {
        tier: row.try_get("tier")?,
        count: row.try_get("count")?,
        live,
    }))
}
