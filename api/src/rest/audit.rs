//! `/audit`: signed checkpoints of the audit log's Merkle tree, and inclusion and
//! consistency proofs.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
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
        .routes(routes!(get_checkpoint))
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
