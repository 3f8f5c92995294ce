//! The fan-out subscriber: the ordered event log in, one delivery per (public event,
//! matching active endpoint) out.
//!
//! It is one more [`Projection`]: each batch runs in the subscription's transaction, so
//! the deliveries it inserts and its checkpoint commit together. A crash before the
//! commit redoes the batch; `ON CONFLICT DO NOTHING` on `(endpoint_id, event_id)` makes
//! a redo (or a replay, or a second process) unable to create a second delivery.
//!
//! It keeps its own fold of `Webhook` events (`webhook_routes`), applied in log order in
//! the same batch as the events it matches: an event is delivered to the endpoints that
//! were active and subscribed at its place in the log, never to one created after it.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;

use cqrs_es::Aggregate;
use pulsar_domain::catalog::PublicEvent;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::webhook::{self, Webhook, WebhookEvent};
use pulsar_projections::log::{self, StoredEvent};
use pulsar_projections::public::publish_stream;
use pulsar_projections::{Projection, ProjectionError};
use sqlx::PgConnection;

/// The subscriber's name (its checkpoint row; workers watch its progress).
pub const NAME: &str = "webhook_fanout";

/// Why deliveries still queued for an endpoint that stopped are failed.
pub const ENDPOINT_STOPPED: &str = "endpoint disabled or deleted";

/// An endpoint as the fan-out matches it.
#[derive(Debug, Clone)]
pub struct Route {
    pub endpoint_id: String,
    pub events: Vec<String>,
}

impl Route {
    fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|p| webhook::matches(p, event_type))
    }
}

/// Fans the log out into `webhook_deliveries`.
#[derive(Debug, Default)]
pub struct FanOut;

impl Projection for FanOut {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        fan_out(conn, std::slice::from_ref(event)).await
    }

    fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        fan_out(conn, events)
    }
}

/// A delivery to insert: the message (the public event) and its endpoints.
struct Planned {
    event: PublicEvent,
    recorded_at: chrono::DateTime<chrono::Utc>,
    endpoints: Vec<String>,
}

async fn fan_out(conn: &mut PgConnection, events: &[StoredEvent]) -> Result<(), ProjectionError> {
    let workspaces: BTreeSet<&str> = events.iter().filter_map(|e| e.workspace_id()).collect();
    if workspaces.is_empty() {
        return Ok(());
    }
    let mut routes = load_routes(conn, &workspaces).await?;

    // In log order: fold endpoint changes, and note which endpoints each event could
    // reach at its place in the log.
    let mut candidates: Vec<(usize, Arc<Vec<Route>>)> = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let Some(workspace) = event.workspace_id() else {
            continue;
        };
        if event.aggregate_type == Webhook::TYPE {
            apply_route_change(conn, &mut routes, workspace, event).await?;
        }
        if let Some(active) = routes.get(workspace).filter(|r| !r.is_empty()) {
            candidates.push((index, Arc::clone(active)));
        }
    }
    if candidates.is_empty() {
        return Ok(());
    }
    let published = publish(conn, events, candidates.iter().map(|(i, _)| *i)).await?;
    let planned: Vec<Planned> = candidates
        .into_iter()
        .filter_map(|(index, active)| {
            let event = published.get(&index)?.clone();
            let endpoints: Vec<String> = active
                .iter()
                .filter(|r| r.wants(event.event_type))
                .map(|r| r.endpoint_id.clone())
                .collect();
            (!endpoints.is_empty()).then(|| Planned {
                event,
                recorded_at: events[index].recorded_at,
                endpoints,
            })
        })
        .collect();
    insert(conn, &planned).await
}

/// Active endpoints per workspace, shared until one changes.
type Routes = HashMap<String, Arc<Vec<Route>>>;

async fn load_routes(
    conn: &mut PgConnection,
    workspaces: &BTreeSet<&str>,
) -> Result<Routes, ProjectionError> {
    let workspaces: Vec<&str> = workspaces.iter().copied().collect();
    let rows: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT workspace_id, endpoint_id, events FROM webhook_routes
          WHERE workspace_id = ANY($1) AND active ORDER BY endpoint_id",
    )
    .bind(&workspaces)
    .fetch_all(&mut *conn)
    .await?;
    let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
    for (workspace, endpoint_id, events) in rows {
        routes.entry(workspace).or_default().push(Route {
            endpoint_id,
            events,
        });
    }
    Ok(routes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
}

/// Folds one `Webhook` event into `webhook_routes` and the in-memory routes.
async fn apply_route_change(
    conn: &mut PgConnection,
    routes: &mut Routes,
    workspace: &str,
    event: &StoredEvent,
) -> Result<(), ProjectionError> {
    let id = event.aggregate_id.as_str();
    let active = Arc::make_mut(routes.entry(workspace.to_string()).or_default());
    let mut set_route = |route: Option<Route>| {
        active.retain(|r| r.endpoint_id != id);
        if let Some(route) = route {
            active.push(route);
        }
    };
    match event.decode::<Webhook>()?.payload {
        WebhookEvent::WebhookCreated { settings, .. } => {
            set_route(Some(Route {
                endpoint_id: id.to_string(),
                events: settings.events.clone(),
            }));
            sqlx::query(
                "INSERT INTO webhook_routes (endpoint_id, workspace_id, url, events, rate_limit, active)
                 VALUES ($1, $2, $3, $4, $5, true)
                 ON CONFLICT (endpoint_id) DO NOTHING",
            )
            .bind(id)
            .bind(workspace)
            .bind(&settings.url)
            .bind(&settings.events)
            .bind(settings.rate_limit.map(|r| r as i32))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO webhook_stats (endpoint_id) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .execute(&mut *conn)
            .await?;
        }
        WebhookEvent::WebhookUpdated {
            settings,
            is_active,
            ..
        } => {
            set_route(is_active.then(|| Route {
                endpoint_id: id.to_string(),
                events: settings.events.clone(),
            }));
            sqlx::query(
                "UPDATE webhook_routes SET url = $2, events = $3, rate_limit = $4, active = $5
                  WHERE endpoint_id = $1",
            )
            .bind(id)
            .bind(&settings.url)
            .bind(&settings.events)
            .bind(settings.rate_limit.map(|r| r as i32))
            .bind(is_active)
            .execute(&mut *conn)
            .await?;
            if is_active {
                // A re-enabled endpoint starts a fresh failure window.
                sqlx::query(
                    "UPDATE webhook_stats SET failing_since = NULL, consecutive_failures = 0
                      WHERE endpoint_id = $1 AND failing_since IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *conn)
                .await?;
            } else {
                fail_queued(conn, id).await?;
            }
        }
        WebhookEvent::WebhookSecretRotated { .. } => {}
        WebhookEvent::WebhookDisabled { .. } => {
            set_route(None);
            sqlx::query("UPDATE webhook_routes SET active = false WHERE endpoint_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            fail_queued(conn, id).await?;
        }
        WebhookEvent::WebhookDeleted => {
            set_route(None);
            sqlx::query("DELETE FROM webhook_routes WHERE endpoint_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            fail_queued(conn, id).await?;
        }
    }
    Ok(())
}

/// Deliveries still waiting for an endpoint that stopped are failed (and can be
/// recovered once it is active again).
async fn fail_queued(conn: &mut PgConnection, endpoint_id: &str) -> Result<(), ProjectionError> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'failed', last_error = $2, updated_at = now()
          WHERE endpoint_id = $1 AND status IN ('pending', 'retrying')",
    )
    .bind(endpoint_id)
    .bind(ENDPOINT_STOPPED)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The public form of the events at `indices` (those that have one), by index.
///
/// A public payload folds its aggregate's stream up to the event, so each aggregate's
/// events before its first one in the batch are read by key first.
pub(crate) async fn publish(
    conn: &mut PgConnection,
    events: &[StoredEvent],
    indices: impl Iterator<Item = usize>,
) -> Result<HashMap<usize, PublicEvent>, ProjectionError> {
    // Per aggregate: the batch indices of its events we need (in log order).
    let mut streams: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for index in indices {
        let event = &events[index];
        streams
            .entry((&event.aggregate_type, &event.aggregate_id))
            .or_default()
            .push(index);
    }
    let mut prefixes_wanted = Vec::new();
    for ((aggregate_type, aggregate_id), wanted) in &streams {
        let first_sequence = events[wanted[0]].sequence;
        if first_sequence > 1 {
            prefixes_wanted.push((
                aggregate_type.to_string(),
                aggregate_id.to_string(),
                first_sequence,
            ));
        }
    }
    let mut prefixes: HashMap<(String, String), Vec<StoredEvent>> = HashMap::new();
    for event in log::read_stream_prefixes(conn, &prefixes_wanted).await? {
        prefixes
            .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
            .or_default()
            .push(event);
    }
    let mut out = HashMap::new();
    for ((aggregate_type, aggregate_id), wanted) in streams {
        let first_sequence = events[wanted[0]].sequence;
        let mut stream = prefixes
            .remove(&(aggregate_type.to_string(), aggregate_id.to_string()))
            .unwrap_or_default();
        let prefix_len = stream.len();
        // The batch's events of this aggregate from the first wanted one on, in order.
        let batch_part: Vec<usize> = (wanted[0]..events.len())
            .filter(|&i| {
                events[i].aggregate_type == aggregate_type
                    && events[i].aggregate_id == aggregate_id
                    && events[i].sequence >= first_sequence
            })
            .collect();
        stream.extend(batch_part.iter().map(|&i| events[i].clone()));
        let public = publish_stream(&stream)?;
        for (offset, &index) in batch_part.iter().enumerate() {
            if let Some(Some(event)) = public.get(prefix_len + offset) {
                if wanted.contains(&index) {
                    out.insert(index, event.clone());
                }
            }
        }
    }
    Ok(out)
}

/// Stores each public event's body once (`webhook_messages`): the exact bytes every
/// delivery of it signs, whether sent live, retried, recovered or replayed.
pub(crate) async fn insert_messages(
    conn: &mut PgConnection,
    events: &[(&PublicEvent, chrono::DateTime<chrono::Utc>)],
) -> Result<(), ProjectionError> {
    let mut ids = Vec::with_capacity(events.len());
    let mut workspaces = Vec::with_capacity(events.len());
    let mut types = Vec::with_capacity(events.len());
    let mut bodies = Vec::with_capacity(events.len());
    let mut recorded = Vec::with_capacity(events.len());
    for (event, recorded_at) in events {
        let body = serde_json::to_string(event)
            .map_err(|e| ProjectionError::Decode(format!("cannot encode {}: {e}", event.id)))?;
        ids.push(event.id.as_str());
        workspaces.push(event.workspace_id.as_deref().unwrap_or_default());
        types.push(event.event_type);
        bodies.push(body);
        recorded.push(*recorded_at);
    }
    sqlx::query(
        "INSERT INTO webhook_messages (event_id, workspace_id, event_type, body, recorded_at)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&workspaces)
    .bind(&types)
    .bind(&bodies)
    .bind(&recorded)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts messages and deliveries, each at most once ever.
async fn insert(conn: &mut PgConnection, planned: &[Planned]) -> Result<(), ProjectionError> {
    if planned.is_empty() {
        return Ok(());
    }
    let messages: Vec<_> = planned.iter().map(|p| (&p.event, p.recorded_at)).collect();
    insert_messages(conn, &messages).await?;
    let mut delivery_ids = Vec::new();
    let mut delivery_endpoints = Vec::new();
    let mut delivery_events = Vec::new();
    for plan in planned {
        for endpoint in &plan.endpoints {
            delivery_ids.push(ids::new_id(prefix::DELIVERY));
            delivery_endpoints.push(endpoint.as_str());
            delivery_events.push(plan.event.id.as_str());
        }
    }
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, endpoint_id, workspace_id, event_id, event_type,
                                         status, next_attempt_at)
         SELECT d.id, d.endpoint_id, m.workspace_id, m.event_id, m.event_type, 'pending', now()
           FROM unnest($1::text[], $2::text[], $3::text[]) AS d(id, endpoint_id, event_id)
           JOIN webhook_messages m ON m.event_id = d.event_id
         ON CONFLICT (endpoint_id, event_id) DO NOTHING",
    )
    .bind(&delivery_ids)
    .bind(&delivery_endpoints)
    .bind(&delivery_events)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
