//! `/audit`: signed checkpoints of the audit log's Merkle tree, and inclusion and
//! consistency proofs.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ErrorOut, SCOPING_PARAMETER};
use crate::application::audit;
use crate::application::AppState;
use crate::application::{Auth, Error, Result};
use crate::http::extract::QueryPairs;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(get_checkpoint))
        .routes(routes!(verify))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
}

/// A signed checkpoint (C2SP tlog-checkpoint).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointOut {
    pub origin: String,
    pub tree_size: u64,
    /// Base64 of the RFC 9162 root hash.
    pub root_hash: String,
    pub signed_at: String,
    /// Hex of the signed-note key id (4 bytes).
    pub key_id: String,
    /// Base64 of the Ed25519 public key.
    pub public_key: String,
    /// Base64 of the Ed25519 signature over the checkpoint's first three lines.
    pub signature: String,
    /// The checkpoint text with its signature line.
    pub checkpoint: String,
}

/// An RFC 9162 inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionOut {
    pub log_index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub hashes: Vec<String>,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyOut {
    pub from: u64,
    pub to: u64,
    pub hashes: Vec<String>,
}

/// One audit entry: the event as it is hashed into the tree, plus its leaf `hash`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventOut {
    /// `global_position` in the events table (not gap free; a cursor).
    pub position: i64,
    /// 0-based place in the whole log in commit order (gap free).
    pub log_index: i64,
    pub event_id: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    /// `actor_type, actor_id, request_id, client_ip, user_agent, workspace_id`.
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub recorded_at: String,
    /// Hex of the RFC 9162 leaf hash over the entry's canonical bytes (without `hash`).
    pub hash: String,
}

/// `{data, meta: {next_after}}` of `GET /audit/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventsOut {
    pub data: Vec<AuditEventOut>,
    #[schema(value_type = Object)]
    pub meta: Value,
}

const EVENT_PARAMETERS: [&str; 8] = [
    "aggregate_type",
    "aggregate_id",
    "actor_id",
    "event_type",
    "from",
    "to",
    "after",
    "limit",
];

fn event_query(query: &QueryPairs) -> Result<audit::EventQuery> {
    let mut out = audit::EventQuery {
        limit: 100,
        ..Default::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in &query.0 {
        if name == SCOPING_PARAMETER {
            continue;
        }
        let Some(known) = EVENT_PARAMETERS.iter().find(|p| **p == name.as_str()) else {
            return Err(Error::BadRequest(format!(
                "Unknown query parameter `{name}`."
            )));
        };
        if seen.contains(known) {
            return Err(Error::BadRequest(format!("`{name}` is given twice.")));
        }
        seen.push(known);
        let time = || {
            chrono::DateTime::parse_from_rfc3339(value)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| Error::BadRequest(format!("`{name}` must be an RFC 3339 time.")))
        };
        let text = || Some(value.clone());
        match *known {
            "aggregate_type" => out.filter.aggregate_type = text(),
            "aggregate_id" => out.filter.aggregate_id = text(),
            "actor_id" => out.filter.actor_id = text(),
            "event_type" => out.filter.event_type = text(),
            "from" => out.filter.from = Some(time()?),
            "to" => out.filter.to = Some(time()?),
            "after" => {
                out.after =
                    Some(value.parse().map_err(|_| {
                        Error::BadRequest("`after` must be an event position.".into())
                    })?)
            }
            _ => {
                out.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=audit::MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        Error::BadRequest(format!("`limit` must be from 1 to {}.", audit::MAX_PAGE))
                    })?
            }
        }
    }
    Ok(out)
}

/// The workspace's events in commit order (`audit:read`); with `Accept:
/// application/x-ndjson` the whole matching history streams, one event per line.
#[utoipa::path(get, path = "/audit/events", tag = "audit",
    params(("aggregate_type" = Option<String>, Query), ("aggregate_id" = Option<String>, Query),
        ("actor_id" = Option<String>, Query), ("event_type" = Option<String>, Query),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query),
        ("after" = Option<i64>, Query, description = "The `position` of the last event of the previous page."),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100.")),
    responses((status = 200, body = AuditEventsOut), (status = 400, body = ErrorOut), (status = 403, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_events(
    State(state): State<AppState>,
    auth: Auth,
    headers: HeaderMap,
    query: QueryPairs,
) -> Result<Response> {
    let request = event_query(&query)?;
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/x-ndjson"));
    if ndjson {
        let pages = audit::events_stream(state.pool.clone(), &auth, &request).await?;
        let lines = pages.map(|page| {
            page.map(|items| {
                let mut out = Vec::new();
                for item in items {
                    if serde_json::to_writer(&mut out, &item).is_ok() {
                        out.push(b'\n');
                    }
                }
                axum::body::Bytes::from(out)
            })
            .map_err(|error| std::io::Error::other(error.to_string()))
        });
        return Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response());
    }
    let (items, next) = audit::events(&state.pool, &auth, &request).await?;
    Ok(axum::Json(json!({"data": items, "meta": {"next_after": next}})).into_response())
}

/// The query's numbers by name: every name in `required` present once, every other
/// parameter in `optional` or refused (400).
fn numbers(query: &QueryPairs, required: &[&str], optional: &[&str]) -> Result<Vec<(String, u64)>> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for (name, value) in &query.0 {
        if name == SCOPING_PARAMETER {
            continue;
        }
        if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
            return Err(Error::BadRequest(format!(
                "Unknown query parameter `{name}`."
            )));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(Error::BadRequest(format!("`{name}` is given twice.")));
        }
        let number = value
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| Error::BadRequest(format!("`{name}` must be a whole number.")))?;
        out.push((name.clone(), number));
    }
    for name in required {
        if !out.iter().any(|(n, _)| n == name) {
            return Err(Error::BadRequest(format!("`{name}` is required.")));
        }
    }
    Ok(out)
}

fn get(numbers: &[(String, u64)], name: &str) -> Option<u64> {
    numbers.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// What re-hashing the log found.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyOut {
    pub intact: bool,
    pub events_checked: u64,
    pub first_broken_position: Option<i64>,
    pub tree_size: u64,
    pub root_matches_checkpoint: bool,
}

/// Re-hash every stored event, compare with its leaf, and recompute the root of the
/// latest signed checkpoint from the events alone (`audit:read`).
#[utoipa::path(get, path = "/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyOut), (status = 400, body = ErrorOut), (status = 403, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn verify(State(state): State<AppState>, auth: Auth, query: QueryPairs) -> Result<Response> {
    numbers(&query, &[], &[])?;
    let report = audit::verify(&state.pool, &auth).await?;
    Ok(axum::Json(report).into_response())
}

/// The latest signed checkpoint, or the one of `tree_size` (`audit:read`).
#[utoipa::path(get, path = "/audit/checkpoint", tag = "audit",
    params(("tree_size" = Option<u64>, Query)),
    responses((status = 200, body = CheckpointOut), (status = 400, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_checkpoint(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryPairs,
) -> Result<Response> {
    let n = numbers(&query, &[], &["tree_size"])?;
    let checkpoint = audit::checkpoint(&state.pool, &auth, get(&n, "tree_size")).await?;
    Ok(axum::Json(checkpoint).into_response())
}

/// The RFC 9162 inclusion proof of one event (by `log_index`) in a tree size.
#[utoipa::path(get, path = "/audit/proof/inclusion", tag = "audit",
    params(("log_index" = u64, Query), ("tree_size" = u64, Query)),
    responses((status = 200, body = InclusionOut), (status = 400, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn inclusion_proof(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryPairs,
) -> Result<Response> {
    let n = numbers(&query, &["log_index", "tree_size"], &[])?;
    let (index, size) = (
        get(&n, "log_index").unwrap_or_default(),
        get(&n, "tree_size").unwrap_or_default(),
    );
    let proof = audit::inclusion_proof(&state.pool, &auth, index, size).await?;
    Ok(axum::Json(proof).into_response())
}

/// The RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(get, path = "/audit/proof/consistency", tag = "audit",
    params(("from" = u64, Query), ("to" = u64, Query)),
    responses((status = 200, body = ConsistencyOut), (status = 400, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn consistency_proof(
    State(state): State<AppState>,
    auth: Auth,
    query: QueryPairs,
) -> Result<Response> {
    let n = numbers(&query, &["from", "to"], &[])?;
    let (from, to) = (
        get(&n, "from").unwrap_or_default(),
        get(&n, "to").unwrap_or_default(),
    );
    let proof = audit::consistency_proof(&state.pool, &auth, from, to).await?;
    Ok(axum::Json(proof).into_response())
}
