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

use chrono::SubsecRound;
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
        // creator's display name is resolved now, so lists need no joins.
        let insert = format!(
            "WITH created AS (
                INSERT INTO {table} (id, workspace_id, created_by, version, created_at, updated_at, {columns})
                SELECT e.id, e.workspace_id,
                       jsonb_build_object('type', e.actor_type, 'id', e.actor_id, 'name', actor_name(e.actor_id)),
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
        let update = format!(
            "UPDATE {table} SET ({columns}) = (SELECT {exprs} FROM (SELECT $2::jsonb AS f) AS event),
                    version = $3, updated_at = $4
              WHERE id = $1"
        );
        let delete = format!(
            "WITH deleted AS (DELETE FROM {table} WHERE id = $1 RETURNING workspace_id)
             UPDATE workspace_record_counts c SET count = c.count - 1
               FROM deleted WHERE c.workspace_id = deleted.workspace_id AND c.feature = '{table}'"
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
    at: Vec<chrono::DateTime<chrono::Utc>>,
    fields: Vec<serde_json::Value>,
}

impl<T: RecordTable> RecordProjection<T> {
    async fn insert(&self, conn: &mut PgConnection, c: Creations) -> Result<(), ProjectionError> {
        if c.ids.is_empty() {
            return Ok(());
        }
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
        Ok(())
    }

    /// Applies one event; creations are gathered into `pending` for one insert, which
    /// is flushed before anything else touches the table so log order holds.
    async fn step(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
        pending: &mut Creations,
    ) -> Result<(), ProjectionError> {
        if !T::TYPES.contains(&event.aggregate_type.as_str()) {
            return Ok(());
        }
        let id = &event.aggregate_id;
        let at = event.recorded_at.trunc_subsecs(3);
        match event.decode::<Record<T::Kind>>()?.payload {
            RecordEvent::Created {
                workspace_id,
                fields,
                created_by,
            } => {
                pending.ids.push(id.clone());
                pending.workspaces.push(workspace_id);
                pending.actor_types.push(created_by.actor_type.as_str());
                pending.actor_ids.push(created_by.id);
                pending.versions.push(event.sequence);
                pending.at.push(at);
                pending.fields.push(fields_json(&fields)?);
            }
            RecordEvent::Updated { fields, .. } => {
                self.insert(conn, std::mem::take(pending)).await?;
                sqlx::query(&self.update)
                    .bind(id)
                    .bind(fields_json(&fields)?)
                    .bind(event.sequence)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
            RecordEvent::Deleted { .. } => {
                self.insert(conn, std::mem::take(pending)).await?;
                sqlx::query(&self.delete).bind(id).execute(conn).await?;
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

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// Set-based: a batch's consecutive creations become one multi-row insert (under
    /// load most of a batch), updates and deletions one statement each, in log order.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut pending = Creations::default();
        for event in events {
            self.step(conn, event, &mut pending).await?;
        }
        self.insert(conn, pending).await
    }
}
