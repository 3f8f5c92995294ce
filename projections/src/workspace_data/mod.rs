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
        // The creator's display name is resolved now, so lists need no joins.
        let insert = format!(
            "WITH created AS (
                INSERT INTO {table} (id, workspace_id, created_by, version, created_at, updated_at, {columns})
                SELECT $1, $2, jsonb_build_object('type', $3::text, 'id', $4::text, 'name',
                        (SELECT coalesce(name, email) FROM users WHERE id = $4
                         UNION ALL SELECT name FROM api_keys WHERE id = $4 LIMIT 1)),
                       $5, $6, $6, {exprs}
                  FROM (SELECT $7::jsonb AS f) AS event
                RETURNING workspace_id)
             INSERT INTO workspace_record_counts (workspace_id, feature, count)
             SELECT workspace_id, '{table}', 1 FROM created
             ON CONFLICT (workspace_id, feature)
             DO UPDATE SET count = workspace_record_counts.count + 1"
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
                sqlx::query(&self.insert)
                    .bind(id)
                    .bind(workspace_id)
                    .bind(created_by.actor_type.as_str())
                    .bind(created_by.id)
                    .bind(event.sequence)
                    .bind(at)
                    .bind(fields_json(&fields)?)
                    .execute(conn)
                    .await?;
            }
            RecordEvent::Updated { fields, .. } => {
                sqlx::query(&self.update)
                    .bind(id)
                    .bind(fields_json(&fields)?)
                    .bind(event.sequence)
                    .bind(at)
                    .execute(conn)
                    .await?;
            }
            RecordEvent::Deleted { .. } => {
                sqlx::query(&self.delete).bind(id).execute(conn).await?;
            }
        }
        Ok(())
    }
}
