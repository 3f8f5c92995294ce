//! The event store's repository: postgres-es's table shapes and rules, in fewer round
//! trips on the write path.
//!
//! cqrs-es drives a command through a [`PersistedEventRepository`]: load (snapshot, then
//! the events after it), then persist (the new events, and every so often a snapshot).
//! postgres-es implements that with one query per step and a transaction around the
//! inserts: loading is two round trips, appending one event is three (BEGIN, INSERT,
//! COMMIT), and the caller then needs a fourth to learn where the event landed in the
//! log. This repository keeps postgres-es's tables, columns, snapshot rules and conflict
//! semantics and replaces only those round trips (measured in docs/benchmarks.md):
//!
//! - **load**: the snapshot and the events after it in one query (`get_snapshot` reads
//!   both; `get_last_events` hands out what it read);
//! - **append**: one statement, `INSERT … SELECT FROM unnest(…) RETURNING` the log
//!   position, which is one implicit transaction; when a snapshot is due (every 50
//!   events) the insert and the snapshot write share an explicit transaction, as in
//!   postgres-es;
//! - a primary-key conflict is an optimistic-lock error (`AggregateConflict`), as in
//!   postgres-es.

use std::sync::{Arc, Mutex};

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use pulsar_projections::Position;
use serde_json::Value;
use sqlx::{PgPool, Postgres, Row};

/// What the last append returned: where its last event sits in the log.
pub type Appended = Arc<Mutex<Option<Position>>>;

/// See the module docs.
pub struct LogRepository {
    pool: PgPool,
    /// postgres-es, for what the write path does not use (streams).
    fallback: PostgresEventRepository,
    /// Events read along with the snapshot, for the `get_last_events` that follows.
    preloaded: Mutex<Option<(usize, Vec<SerializedEvent>)>>,
    appended: Appended,
}

impl LogRepository {
    pub fn new(pool: PgPool, appended: Appended) -> Self {
        Self {
            fallback: PostgresEventRepository::new(pool.clone()),
            pool,
            preloaded: Mutex::new(None),
            appended,
        }
    }
}

fn error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

fn event_of(
    aggregate_type: &str,
    aggregate_id: &str,
    entry: &Value,
) -> Result<SerializedEvent, PersistenceError> {
    let field = |i: usize| entry.get(i).cloned().unwrap_or(Value::Null);
    let text = |i: usize| field(i).as_str().map(str::to_string);
    let (Some(sequence), Some(event_type), Some(event_version)) =
        (field(0).as_u64(), text(1), text(2))
    else {
        return Err(PersistenceError::UnknownError(
            "a stored event row has an unexpected shape".into(),
        ));
    };
    Ok(SerializedEvent::new(
        aggregate_id.to_string(),
        sequence as usize,
        aggregate_type.to_string(),
        event_type,
        event_version,
        field(3),
        field(4),
    ))
}

/// The snapshot row (if any) and every event after it, as `[[sequence, type, version,
/// payload, metadata], …]`, in one round trip.
const LOAD: &str = "
SELECT s.last_sequence, s.current_snapshot, s.payload AS snapshot,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(e.sequence, e.event_type, e.event_version,
                                                    e.payload, e.metadata) ORDER BY e.sequence),
                        '[]'::jsonb)
          FROM events e
         WHERE e.aggregate_type = $1 AND e.aggregate_id = $2
           AND e.sequence > coalesce(s.last_sequence, 0)) AS events
  FROM (SELECT 1) AS one
  LEFT JOIN snapshots s ON s.aggregate_type = $1 AND s.aggregate_id = $2";

/// The events of one command in one statement, returning where the last one landed.
const APPEND: &str = "
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
  FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
       AS e(sequence, event_type, event_version, payload, metadata)
RETURNING transaction_id::text AS tx, global_position, sequence";

impl LogRepository {
    async fn append<'c, E>(
        &self,
        executor: E,
        aggregate_type: &str,
        events: &[SerializedEvent],
    ) -> Result<usize, PersistenceError>
    where
        E: sqlx::Executor<'c, Database = Postgres>,
    {
        let aggregate_id = events.first().map_or("", |e| e.aggregate_id.as_str());
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence as i64).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<&str> = events.iter().map(|e| e.event_version.as_str()).collect();
        let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
        let metadata: Vec<&Value> = events.iter().map(|e| &e.metadata).collect();
        let rows = sqlx::query(APPEND)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(&sequences)
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .fetch_all(executor)
            .await
            .map_err(error)?;
        let mut last: Option<(i64, Position)> = None;
        for row in rows {
            let sequence: i64 = row.try_get("sequence").map_err(error)?;
            let tx: String = row.try_get("tx").map_err(error)?;
            let position = Position::from_db(&tx, row.try_get("global_position").map_err(error)?)
                .map_err(|e| PersistenceError::UnknownError(e.into()))?;
            if last.is_none_or(|(s, _)| sequence > s) {
                last = Some((sequence, position));
            }
        }
        *self.appended.lock().unwrap_or_else(|e| e.into_inner()) = last.map(|(_, p)| p);
        Ok(events.last().map_or(0, |e| e.sequence))
    }
}

impl PersistedEventRepository for LogRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.fallback.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let preloaded = self
            .preloaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match preloaded {
            // Read with the snapshot, from the same sequence on.
            Some((after, events)) if after == last_sequence => Ok(events),
            _ => {
                self.fallback
                    .get_last_events::<A>(aggregate_id, last_sequence)
                    .await
            }
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        let row = sqlx::query(LOAD)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .fetch_one(&self.pool)
            .await
            .map_err(error)?;
        let last_sequence: Option<i64> = row.try_get("last_sequence").map_err(error)?;
        let events: Value = row.try_get("events").map_err(error)?;
        let events = events
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|entry| event_of(A::TYPE, aggregate_id, entry))
            .collect::<Result<Vec<_>, _>>()?;
        let after = last_sequence.unwrap_or(0) as usize;
        *self.preloaded.lock().unwrap_or_else(|e| e.into_inner()) = Some((after, events));
        let Some(current_sequence) = last_sequence else {
            return Ok(None);
        };
        let current_snapshot: i64 = row.try_get("current_snapshot").map_err(error)?;
        Ok(Some(SerializedSnapshot {
            aggregate_id: aggregate_id.to_string(),
            aggregate: row.try_get("snapshot").map_err(error)?,
            current_sequence: current_sequence as usize,
            current_snapshot: current_snapshot as usize,
        }))
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let Some((aggregate_id, aggregate, current_snapshot)) = snapshot_update else {
            self.append(&self.pool, A::TYPE, events).await?;
            return Ok(());
        };
        let mut tx = self.pool.begin().await.map_err(error)?;
        let last_sequence = self.append(&mut *tx, A::TYPE, events).await?;
        let written = if current_snapshot == 1 {
            sqlx::query(
                "INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(A::TYPE)
            .bind(&aggregate_id)
            .bind(last_sequence as i64)
            .bind(current_snapshot as i64)
            .bind(&aggregate)
            .execute(&mut *tx)
            .await
        } else {
            sqlx::query(
                "UPDATE snapshots SET last_sequence = $3, payload = $6, current_snapshot = $4
                  WHERE aggregate_type = $1 AND aggregate_id = $2 AND current_snapshot = $5",
            )
            .bind(A::TYPE)
            .bind(&aggregate_id)
            .bind(last_sequence as i64)
            .bind(current_snapshot as i64)
            .bind(current_snapshot as i64 - 1)
            .bind(&aggregate)
            .execute(&mut *tx)
            .await
        }
        .map_err(error)?;
        if written.rows_affected() != 1 {
            return Err(PersistenceError::OptimisticLockError);
        }
        tx.commit().await.map_err(error)
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.fallback.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.fallback.stream_all_events::<A>().await
    }
}
