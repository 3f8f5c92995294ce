//! Putting deliveries back in the queue: a manual retry, the bulk recover of a window,
//! and a replay of stored events to one endpoint.
//!
//! Each keeps the rule of one delivery per (event, endpoint): a delivery queued again
//! is the same row (same `webhook-id`, same body), its schedule starting over from the
//! attempt it had reached (`round_base`).

use chrono::{DateTime, Utc};
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::webhook;
use pulsar_projections::log;
use pulsar_projections::{Position, ProjectionError};
use sqlx::PgPool;

use crate::fanout;

/// Why a delivery could not be retried.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such delivery")]
    NotFound,
    #[error("the delivery already succeeded")]
    Succeeded,
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// Queues one delivery of `endpoint_id` again, now; returns its attempt count.
pub async fn retry(pool: &PgPool, endpoint_id: &str, delivery_id: &str) -> Result<i32, RetryError> {
    let row: Option<(String, i32)> = sqlx::query_as(
        "UPDATE webhook_deliveries d
            SET status = CASE WHEN d.status = 'success' THEN d.status ELSE 'pending' END,
                round_base = CASE WHEN d.status = 'success' THEN d.round_base ELSE d.attempt END,
                next_attempt_at = CASE WHEN d.status = 'success' THEN d.next_attempt_at
                                       ELSE now() END,
                updated_at = now()
          WHERE d.id = $1 AND d.endpoint_id = $2
      RETURNING d.status, d.attempt",
    )
    .bind(delivery_id)
    .bind(endpoint_id)
    .fetch_optional(pool)
    .await?;
    match row {
        None => Err(RetryError::NotFound),
        Some((status, _)) if status == "success" => Err(RetryError::Succeeded),
        Some((_, attempt)) => Ok(attempt),
    }
}

/// Queues again, once, every `failed` or `dead` delivery of `endpoint_id` created in
/// `[since, until)`; returns how many.
pub async fn recover(
    pool: &PgPool,
    endpoint_id: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE webhook_deliveries
            SET status = 'pending', round_base = attempt, next_attempt_at = now(),
                updated_at = now()
          WHERE endpoint_id = $1 AND status IN ('failed', 'dead')
            AND created_at >= $2 AND created_at < $3",
    )
    .bind(endpoint_id)
    .bind(since)
    .bind(until)
    .execute(pool)
    .await?
    .rows_affected())
}

/// What a replay sends, and where.
#[derive(Debug)]
pub struct Replay<'a> {
    pub endpoint_id: &'a str,
    pub workspace_id: &'a str,
    /// The endpoint's subscriptions.
    pub endpoint_events: &'a [String],
    /// Narrows the replay to these types or wildcards; empty for all the endpoint takes.
    pub event_types: &'a [String],
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// Delivers again every stored event of the workspace recorded in the window that the
/// endpoint subscribes to: existing deliveries are queued again (same id, same body),
/// events from before the endpoint existed get their delivery now. Reads the log in
/// pages, so any window back to the workspace's first event works. Returns how many
/// deliveries were queued.
pub async fn replay(pool: &PgPool, replay: &Replay<'_>) -> Result<u64, ProjectionError> {
    const PAGE: i64 = 1000;
    let mut after = Position::ZERO;
    let mut queued = 0;
    loop {
        let mut conn = pool.acquire().await?;
        let events = log::read_workspace_window(
            &mut conn,
            replay.workspace_id,
            replay.since,
            replay.until,
            after,
            PAGE,
        )
        .await?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.position;
        let published = fanout::publish(&mut conn, &events, 0..events.len()).await?;
        let mut wanted: Vec<(usize, &pulsar_domain::catalog::PublicEvent)> = published
            .iter()
            .filter(|(_, event)| {
                let t = event.event_type;
                replay
                    .endpoint_events
                    .iter()
                    .any(|p| webhook::matches(p, t))
                    && (replay.event_types.is_empty()
                        || replay.event_types.iter().any(|p| webhook::matches(p, t)))
            })
            .map(|(index, event)| (*index, event))
            .collect();
        wanted.sort_by_key(|(index, _)| *index);
        queued += queue_events(&mut conn, replay.endpoint_id, &events, &wanted).await?;
        if i64::try_from(events.len()).unwrap_or(0) < PAGE {
            break;
        }
    }
    Ok(queued)
}

async fn queue_events(
    conn: &mut sqlx::PgConnection,
    endpoint_id: &str,
    events: &[pulsar_projections::StoredEvent],
    wanted: &[(usize, &pulsar_domain::catalog::PublicEvent)],
) -> Result<u64, ProjectionError> {
    if wanted.is_empty() {
        return Ok(0);
    }
    let messages: Vec<_> = wanted
        .iter()
        .map(|(index, event)| (*event, events[*index].recorded_at))
        .collect();
    fanout::insert_messages(conn, &messages).await?;
    let message_ids: Vec<&str> = wanted.iter().map(|(_, e)| e.id.as_str()).collect();
    let delivery_ids: Vec<String> = wanted
        .iter()
        .map(|_| ids::new_id(prefix::DELIVERY))
        .collect();
    let done = sqlx::query(
        "INSERT INTO webhook_deliveries AS d (id, endpoint_id, workspace_id, event_id,
                                              event_type, status, next_attempt_at)
         SELECT u.id, $2, m.workspace_id, m.event_id, m.event_type, 'pending', now()
           FROM unnest($1::text[], $3::text[]) AS u(id, event_id)
           JOIN webhook_messages m ON m.event_id = u.event_id
         ON CONFLICT (endpoint_id, event_id) DO UPDATE
            SET status = 'pending', round_base = d.attempt, next_attempt_at = now(),
                updated_at = now()
          WHERE d.status NOT IN ('pending', 'retrying')",
    )
    .bind(&delivery_ids)
    .bind(endpoint_id)
    .bind(&message_ids)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
