//! Rebuilding a read model from the log, while the live one keeps answering.
//!
//! A projection is a pure fold of the log (applying an event reads only the event and
//! the projection's own tables), so replaying the log from position zero into empty
//! tables must give the live rows exactly. `rebuild` does that in four steps:
//!
//! 1. **Shadow tables.** A schema `rebuild_<name>` gets an empty copy of each table the
//!    projection owns, and of each table it shares with others: columns, generated
//!    columns, defaults and constraints; the other indexes, under the same names, are
//!    built after step 2 (one pass each rather than maintained row by row).
//! 2. **Bulk replay.** On a connection whose `search_path` puts the shadow schema first
//!    (the projection's SQL names its tables unqualified), the projection's own
//!    `apply_batch` runs over the log in the subscription order, never past the live
//!    subscriber's checkpoint, in large batches.
//! 3. **Catch-up and swap, in one transaction.** Holding the subscriber's advisory lock
//!    (the live projector's next batch waits), the shadow catches up to the live
//!    checkpoint, each owned table is replaced by its shadow (dropped, the shadow moved
//!    into `public`), and the projection's rows
//!    of each shared table are replaced. Readers see the old tables until the commit
//!    and the new ones after it; the checkpoint does not move, because the new tables
//!    stand exactly where the old ones did.
//! 4. The shadow schema is dropped.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::log;
use crate::position::Position;
use crate::subscription::{Projection, ProjectionError};

/// The tables a projection keeps.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Tables only this projection writes: replaced whole.
    pub owned: Vec<&'static str>,
    /// Tables several projections write, each with the SQL condition selecting this
    /// projection's rows: those rows are replaced.
    pub shared: Vec<(&'static str, String)>,
}

/// How far a rebuild is.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub name: &'static str,
    /// Events applied to the shadow tables so far.
    pub done: u64,
    /// Events to apply, as counted when the bulk replay started (the live log may grow
    /// meanwhile; those are applied too).
    pub total: u64,
    pub elapsed: Duration,
}

impl Progress {
    pub fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Estimated time left, from the rate so far.
    pub fn left(&self) -> Duration {
        let rate = self.per_second();
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.total.saturating_sub(self.done) as f64 / rate)
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub name: &'static str,
    pub events: u64,
    pub elapsed: Duration,
    /// Where the rebuilt tables stand (the subscriber's checkpoint at the swap).
    pub position: Position,
}

/// Events per bulk batch: larger than a live batch, since nobody waits on them.
const BATCH: i64 = 5_000;

fn shadow_schema(name: &str) -> String {
    format!("rebuild_{name}")
}

async fn checkpoint(conn: &mut PgConnection, name: &str) -> Result<Position, ProjectionError> {
    let row = sqlx::query(
        "SELECT last_transaction_id::text AS tx, last_global_position AS pos
           FROM subscription_checkpoints WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(row) => Position::from_db(row.try_get("tx")?, row.try_get("pos")?)
            .map_err(ProjectionError::Decode),
        None => Ok(Position::ZERO),
    }
}

/// Applies the projection's events after `from`, up to and including `until`, to the
/// tables `conn`'s search path names; returns the last position applied.
async fn replay<P: Projection>(
    conn: &mut PgConnection,
    projection: &P,
    mut from: Position,
    until: Position,
    mut on_batch: impl FnMut(u64),
) -> Result<Position, ProjectionError> {
    loop {
        let mut tx = conn.begin().await?;
        let events =
            log::read_between_of_types(&mut tx, from, until, projection.aggregate_types(), BATCH)
                .await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tx.rollback().await?;
            return Ok(from);
        };
        projection.apply_batch(&mut tx, &events).await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        on_batch(events.len() as u64);
        from = last;
    }
}

/// Rebuilds `projection`'s read model from the log (see the module docs). The server
/// may keep running: its live projector pauses only for the final catch-up and swap.
pub async fn rebuild<P: Projection>(
    pool: &PgPool,
    projection: &P,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Report, ProjectionError> {
    let name = projection.name();
    let tables = projection.tables();
    if tables.owned.is_empty() && tables.shared.is_empty() {
        return Err(ProjectionError::Decode(format!(
            "`{name}` declares no tables to rebuild"
        )));
    }
    let started = Instant::now();
    let schema = shadow_schema(name);
    // A connection of its own, out of the pool: its search path is changed.
    let mut conn = pool.acquire().await?.detach();
    sqlx::query("SET client_min_messages = warning")
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .execute(&mut conn)
    .await?;
    // Shadow tables with the live ones' columns, defaults and constraints; their plain
    // indexes are built after the bulk replay (one pass each, not maintained row by
    // row), under the live names, so the swapped-in tables look exactly like the old.
    let mut deferred = Vec::new();
    for table in tables
        .owned
        .iter()
        .chain(tables.shared.iter().map(|(t, _)| t))
    {
        deferred.extend(create_shadow(&mut conn, &schema, table).await?);
    }
    sqlx::query(&format!("SET search_path = {schema}, public"))
        .execute(&mut conn)
        .await?;

    // Bulk replay, chasing the live checkpoint.
    let mut position = Position::ZERO;
    let mut target = checkpoint(&mut conn, name).await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events
          WHERE (cardinality($3::text[]) = 0 OR aggregate_type = ANY($3))
            AND (transaction_id, global_position) <= ($1::text::xid8, $2)",
    )
    .bind(target.transaction_text())
    .bind(target.global_position)
    .bind(projection.aggregate_types())
    .fetch_one(&mut conn)
    .await?;
    let mut progress = Progress {
        name,
        done: 0,
        total: total as u64,
        elapsed: Duration::ZERO,
    };
    on_progress(&progress);
    loop {
        position = replay(&mut conn, projection, position, target, |n| {
            progress.done += n;
            progress.elapsed = started.elapsed();
            on_progress(&progress);
        })
        .await?;
        let now = checkpoint(&mut conn, name).await?;
        if now == target {
            break;
        }
        progress.total += 1; // unknown until read; keeps `left` from reading zero early
        target = now;
    }

    for index in &deferred {
        sqlx::raw_sql(index).execute(&mut conn).await?;
    }

    // Catch up and swap while the live projector waits.
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('pulsar.subscription.' || $1, 0))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    let live = checkpoint(&mut tx, name).await?;
    loop {
        let events = log::read_between_of_types(
            &mut tx,
            position,
            live,
            projection.aggregate_types(),
            BATCH,
        )
        .await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        projection.apply_batch(&mut tx, &events).await?;
        progress.done += events.len() as u64;
        position = last;
    }
    for table in &tables.owned {
        swap_table(&mut tx, &schema, table).await?;
    }
    for (table, condition) in &tables.shared {
        sqlx::raw_sql(&format!(
            "DELETE FROM public.{table} WHERE {condition};
             INSERT INTO public.{table} SELECT * FROM {schema}.{table} WHERE {condition}"
        ))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    conn.close().await?;
    progress.elapsed = started.elapsed();
    progress.total = progress.total.max(progress.done);
    on_progress(&progress);
    Ok(Report {
        name,
        events: progress.done,
        elapsed: started.elapsed(),
        position,
    })
}

/// Creates `schema.table` like `public.table` with its primary key and unique
/// constraints (lookups and upserts need them during the replay); returns the SQL of
/// its other indexes, to build once the rows are in.
async fn create_shadow(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<Vec<String>, ProjectionError> {
    sqlx::raw_sql(&format!(
        "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)"
    ))
    .execute(&mut *conn)
    .await?;
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
          WHERE conrelid = to_regclass('public.' || $1) AND contype IN ('p', 'u', 'x')",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    for (name, definition) in &constraints {
        sqlx::raw_sql(&format!(
            "ALTER TABLE {schema}.{table} ADD CONSTRAINT \"{name}\" {definition}"
        ))
        .execute(&mut *conn)
        .await?;
    }
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await?;
    Ok(indexes
        .into_iter()
        .filter(|(name, _)| !constraints.iter().any(|(c, _)| c == name))
        .map(|(_, definition)| {
            definition.replacen(
                &format!(" ON public.{table} "),
                &format!(" ON {schema}.{table} "),
                1,
            )
        })
        .collect())
}

/// Replaces `public.table` by `schema.table` (whose indexes already have the live
/// names: names are per schema).
async fn swap_table(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> Result<(), ProjectionError> {
    sqlx::raw_sql(&format!(
        "DROP TABLE public.{table} CASCADE; ALTER TABLE {schema}.{table} SET SCHEMA public"
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
