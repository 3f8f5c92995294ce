//! The event log as subscribers see it.

use chrono::{DateTime, Utc};
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};

use crate::position::Position;
use crate::subscription::ProjectionError;

/// One row of the `events` table, with its place in the log order.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: Position,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    /// Who, from where, under which request, and in which workspace (`workspace_id`,
    /// filled by the upcaster for events stored before it was recorded).
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// Decodes the payload as aggregate `A`'s event, the way cqrs-es does on load.
    pub fn decode<A: Aggregate>(&self) -> Result<EventEnvelope<A>, ProjectionError> {
        let serialized = SerializedEvent::new(
            self.aggregate_id.clone(),
            usize::try_from(self.sequence).unwrap_or_default(),
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            self.payload.clone(),
            self.metadata.clone(),
        );
        EventEnvelope::try_from(serialized).map_err(|e| {
            ProjectionError::Decode(format!(
                "{} {}#{} ({}): {e}",
                self.event_type, self.aggregate_id, self.sequence, self.position
            ))
        })
    }

    /// A metadata value (`actor_type`, `actor_id`, `request_id`, ...).
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// `{type, id}` of the actor, as read models show `created_by`.
    pub fn actor_json(&self) -> Value {
        serde_json::json!({
            "type": self.meta("actor_type").unwrap_or("system"),
            "id": self.meta("actor_id").unwrap_or("system"),
        })
    }

    /// The workspace the event belongs to, if any.
    pub fn workspace_id(&self) -> Option<&str> {
        self.meta("workspace_id")
    }

    pub(crate) fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, ProjectionError> {
        let transaction_id: String = row.try_get("tx_text")?;
        // Upcast: events stored before the workspace was recorded get it on read (the
        // `event_workspace` function of migration 0006); the row is never rewritten.
        let mut metadata: Value = row.try_get("metadata")?;
        let workspace: Option<String> = row.try_get("workspace")?;
        if let (Some(workspace), Some(map)) = (workspace, metadata.as_object_mut()) {
            map.entry("workspace_id")
                .or_insert_with(|| Value::String(workspace));
        }
        Ok(Self {
            position: Position::from_db(&transaction_id, row.try_get("global_position")?)
                .map_err(ProjectionError::Decode)?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// The columns [`StoredEvent::from_row`] reads, as a literal for `concat!`.
macro_rules! event_columns {
    () => {
        "transaction_id::text AS tx_text, global_position, aggregate_type, aggregate_id,
         sequence, event_type, event_version, payload, metadata, recorded_at,
         coalesce(metadata ->> 'workspace_id', event_workspace(events)) AS workspace"
    };
}

/// The next events after `after` that no running transaction can still precede.
///
/// Only rows of transactions older than the oldest one still in progress are returned,
/// so a transaction that allocated an earlier position but commits later is never
/// skipped: its events, and every event after them, wait until it ends.
pub async fn read_after(
    conn: &mut PgConnection,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    read(conn, after, None, limit).await
}

/// As [`read_after`], only events of the given aggregate types (same order, same
/// horizon). A subscriber that reads only its own streams does not pay for the others.
pub async fn read_after_of_types(
    conn: &mut PgConnection,
    after: Position,
    aggregate_types: &[&str],
    limit: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    if aggregate_types.is_empty() {
        return read_after(conn, after, limit).await;
    }
    read(conn, after, Some(aggregate_types), limit).await
}

async fn read(
    conn: &mut PgConnection,
    after: Position,
    aggregate_types: Option<&[&str]>,
    limit: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    // The text alias must not be called `transaction_id`: ORDER BY would then sort by
    // the text ('1000' < '999') instead of the xid8 column. Two statements rather than
    // an `$4 IS NULL OR …` so each gets a plan that uses its index.
    const ALL: &str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id, events.global_position
          LIMIT $3"
    );
    const OF_TYPES: &str = concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE aggregate_type = ANY($4)
            AND (transaction_id, global_position) > ($1::text::xid8, $2)
            AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY events.transaction_id, events.global_position
          LIMIT $3"
    );
    let query = sqlx::query(if aggregate_types.is_some() {
        OF_TYPES
    } else {
        ALL
    })
    .bind(after.transaction_text())
    .bind(after.global_position)
    .bind(limit);
    let query = match aggregate_types {
        Some(types) => query.bind(types),
        None => query,
    };
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Events of the given types (all when empty) after `after` and up to and including
/// `until`, in log order: a replay toward a point every reader has passed already, so no
/// horizon is needed.
pub async fn read_between_of_types(
    conn: &mut PgConnection,
    after: Position,
    until: Position,
    aggregate_types: &[&str],
    limit: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE (cardinality($6::text[]) = 0 OR aggregate_type = ANY($6))
            AND (transaction_id, global_position) > ($1::text::xid8, $2)
            AND (transaction_id, global_position) <= ($3::text::xid8, $4)
          ORDER BY events.transaction_id, events.global_position
          LIMIT $5"
    ))
    .bind(after.transaction_text())
    .bind(after.global_position)
    .bind(until.transaction_text())
    .bind(until.global_position)
    .bind(limit)
    .bind(aggregate_types)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// The events before the given sequence of each named aggregate (`(type, id,
/// sequence)`), in stream order: what a fold needs before it can publish an event it
/// reads in log order (see [`crate::public`]).
pub async fn read_stream_prefixes(
    conn: &mut PgConnection,
    wanted: &[(String, String, i64)],
) -> Result<Vec<StoredEvent>, ProjectionError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let (types, rest): (Vec<&str>, Vec<(&str, i64)>) = wanted
        .iter()
        .map(|(t, i, s)| (t.as_str(), (i.as_str(), *s)))
        .unzip();
    let (ids, sequences): (Vec<&str>, Vec<i64>) = rest.into_iter().unzip();
    let rows = sqlx::query(
        "SELECT e.transaction_id::text AS tx_text, e.global_position, e.aggregate_type,
                e.aggregate_id, e.sequence, e.event_type, e.event_version, e.payload, e.metadata,
                e.recorded_at, coalesce(e.metadata ->> 'workspace_id', event_workspace(e)) AS workspace
           FROM unnest($1::text[], $2::text[], $3::bigint[]) AS w(aggregate_type, aggregate_id, below)
           JOIN events e ON e.aggregate_type = w.aggregate_type AND e.aggregate_id = w.aggregate_id
                        AND e.sequence < w.below
          ORDER BY e.aggregate_type, e.aggregate_id, e.sequence",
    )
    .bind(&types)
    .bind(&ids)
    .bind(&sequences)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// The position of an aggregate's latest event, for read-your-writes waits.
pub async fn position_of_latest(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<(Position, i64)>, ProjectionError> {
    let row = sqlx::query(
        "SELECT transaction_id::text AS tx_text, global_position, sequence
           FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
          ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(pool)
    .await?;
    row.map(|row| {
        let tx: String = row.try_get("tx_text")?;
        let position = Position::from_db(&tx, row.try_get("global_position")?)
            .map_err(ProjectionError::Decode)?;
        Ok((position, row.try_get("sequence")?))
    })
    .transpose()
}

/// One aggregate's events recorded at or before `at`, in stream order: the prefix a
/// fold reads to show the aggregate as it stood then.
pub async fn read_stream_until(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    at: DateTime<Utc>,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3
          ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(at)
    .fetch_all(pool)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// A workspace's events recorded in `[since, until)`, in log order, after `after`: what
/// a webhook replay reads, back to the workspace's first event.
pub async fn read_workspace_window(
    conn: &mut PgConnection,
    workspace_id: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    after: Position,
    limit: i64,
) -> Result<Vec<StoredEvent>, ProjectionError> {
    // The first branch uses `events_workspace_idx`; the second finds events stored before
    // the workspace was recorded on each one (the upcaster of migration 0006).
    let rows = sqlx::query(concat!(
        "SELECT ",
        event_columns!(),
        " FROM events
          WHERE ((metadata ? 'workspace_id' AND metadata ->> 'workspace_id' = $1)
                 OR (NOT metadata ? 'workspace_id' AND event_workspace(events) = $1))
            AND recorded_at >= $2 AND recorded_at < $3
            AND (transaction_id, global_position) > ($4::text::xid8, $5)
          ORDER BY events.transaction_id, events.global_position
          LIMIT $6"
    ))
    .bind(workspace_id)
    .bind(since)
    .bind(until)
    .bind(after.transaction_text())
    .bind(after.global_position)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}
