//! State at an instant (`?as_of=`): a resource folded from its own events up to then.
//!
//! The fold is the public catalog's ([`pulsar_domain::catalog::Published`]), so a
//! resource as of an instant has the shape its webhook payloads have: what its events
//! say, without what only read models know (`last_used_at`, actor names, delivery
//! counters). It reads the event store, not a projection, so it is exact at once and
//! the same on every node.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use pulsar_domain::catalog::Published;
use pulsar_projections::{log, public};
use serde_json::Value;

use super::{AppState, Result};

/// `A` `id` as it stood at `at` (the catalog's view; its default when nothing was
/// recorded by then).
pub async fn fold<A: Aggregate + Published>(
    state: &AppState,
    id: &str,
    at: DateTime<Utc>,
) -> Result<A::View> {
    let events = log::read_stream_until(&state.pool, A::TYPE, id, at).await?;
    Ok(public::view::<A>(&events)?)
}

/// A folded view as a response item, `None` when the resource did not exist at that
/// instant (never created by then, or deleted) or belongs to another workspace than
/// `workspace_id` (when given). Event-specific members (`changed`) are dropped.
pub fn present(view: impl serde::Serialize, workspace_id: Option<&str>) -> Option<Value> {
    let mut item = serde_json::to_value(view).ok()?;
    let map = item.as_object_mut()?;
    if map.get("deleted").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    if let Some(workspace_id) = workspace_id {
        if map.get("workspace_id").and_then(Value::as_str) != Some(workspace_id) {
            return None;
        }
    }
    map.remove("changed");
    Some(item)
}

/// `A` `id` in `workspace_id` as it stood at `at`, `None` when it did not exist then.
pub async fn item<A: Aggregate + Published>(
    state: &AppState,
    workspace_id: &str,
    id: &str,
    at: DateTime<Utc>,
) -> Result<Option<Value>> {
    Ok(present(fold::<A>(state, id, at).await?, Some(workspace_id)))
}

/// `A` `id` as a write just left it: what `read_model` (which the write waited for) has,
/// once it caught up with the write; when the wait timed out (a starved projector),
/// folded from the event store instead, which is exact at once. A committed write must
/// never answer 404, nor the version before it, and a one-time secret must reach its
/// caller. `None` only when neither has it.
pub async fn written<A, F>(
    state: &AppState,
    workspace_id: &str,
    id: &str,
    consistent: bool,
    read_model: F,
) -> Result<Option<Value>>
where
    A: Aggregate + Published,
    F: std::future::Future<Output = Result<Option<Value>>>,
{
    if consistent {
        if let Some(item) = read_model.await? {
            return Ok(Some(item));
        }
    }
    tracing::warn!(%id, aggregate = A::TYPE, "answering a write from the event store: its read model is behind");
    // Everything recorded so far (the bound only has to lie past the commit).
    item::<A>(
        state,
        workspace_id,
        id,
        Utc::now() + chrono::TimeDelta::days(1),
    )
    .await
}
