//! Operations: `/healthz`, `/readyz`, `/metrics`. Unauthenticated, outside `/api/v1`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use pulsar_projections::subscription::SubscriberState;
use serde_json::json;

use crate::application::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

/// Ready when the database answers and every subscriber is running, not stuck, and
/// within `PULSAR_READY_MAX_LAG` events of the log's head.
async fn readyz(State(state): State<AppState>) -> Response {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool),
    )
    .await;
    let database_ok = matches!(database, Ok(Ok(1)));
    let mut ready = database_ok;
    let mut subscribers = Vec::new();
    for status in state.subscriptions.statuses() {
        // Only the events it reads: its checkpoint does not move on the others, so a log
        // grown by other streams (a bulk import of tasks, say) is not lag.
        let behind = if database_ok {
            let of_types = !status.reads.is_empty();
            let mut query = sqlx::query_scalar::<_, i64>(if of_types {
                "SELECT count(*) FROM (SELECT 1 FROM events
                   WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
                     AND aggregate_type = ANY($4)
                   LIMIT $3) behind"
            } else {
                "SELECT count(*) FROM (SELECT 1 FROM events
                   WHERE (transaction_id, global_position) > ($1::text::xid8, $2)
                   LIMIT $3) behind"
            })
            .bind(status.transaction_id.to_string())
            .bind(status.global_position)
            .bind(state.config.ready_max_lag + 1);
            if of_types {
                query = query.bind(status.reads.to_vec());
            }
            query.fetch_one(&state.pool).await.ok()
        } else {
            None
        };
        let ok = !status.stuck
            && status.state != SubscriberState::Starting
            && behind.is_some_and(|b| b <= state.config.ready_max_lag);
        ready &= ok;
        subscribers.push(json!({
            "name": status.name,
            "ready": ok,
            "state": status.state,
            "behind": behind,
            "stuck": status.stuck,
            "consecutive_failures": status.consecutive_failures,
            "last_error": status.last_error,
        }));
    }
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database_ok { "ok" } else { "unreachable" },
        "subscriptions": subscribers,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus text exposition.
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&state.subscriptions),
    )
        .into_response()
}
