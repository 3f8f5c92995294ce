//! `/entitlements`: what a workspace may still do, feature by feature.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use pulsar_domain::entitlements::Feature;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ErrorOut, SCOPING_PARAMETER};
use crate::application::entitlements::{self, Check, Recorded};
use crate::application::AppState;
use crate::application::{Auth, Error, Result};
use crate::http::extract::{Json, QueryPairs};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(check))
        .routes(routes!(summary))
        .routes(routes!(record_usage))
}

/// `POST /entitlements/usage`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageIn {
    /// A metered feature: `api_calls` or `pixel_events` (counted features are counted
    /// from what exists).
    pub feature: String,
    /// 1 to 1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub quantity: u64,
    /// Up to 4 KiB of JSON, kept with the event.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Record usage of a metered feature as an event (`entitlements:write`). `recorded` is
/// `false`, and nothing is written, when the quantity would pass the tier's limit;
/// concurrent recordings cannot overshoot it.
#[utoipa::path(post, path = "/entitlements/usage", tag = "entitlements", request_body = UsageIn,
    responses((status = 200, body = Recorded), (status = 400, body = ErrorOut),
        (status = 403, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn record_usage(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<UsageIn>,
) -> Result<Response> {
    let feature = parse_feature(&input.feature)?;
    let recorded =
        entitlements::record_usage(&state, &auth, feature, input.quantity, input.metadata).await?;
    Ok(axum::Json(recorded).into_response())
}

fn parse_feature(name: &str) -> Result<Feature> {
    Feature::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Feature::ALL.iter().map(|f| f.as_str()).collect();
        Error::invalid(
            "feature",
            format!("Unknown feature; features: {}.", names.join(", ")),
        )
    })
}

/// May the workspace use `quantity` (default 1) more of `feature`? (`entitlements:read`)
#[utoipa::path(get, path = "/entitlements/check", tag = "entitlements",
    params(("feature" = String, Query, description = "projects, tasks, contacts, companies, deals, documents, api_keys, webhooks, members, api_calls, pixel_events or storage"),
        ("quantity" = Option<u64>, Query, description = "1 to 1,000,000,000; default 1")),
    responses((status = 200, body = Check), (status = 400, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn check(State(state): State<AppState>, auth: Auth, query: QueryPairs) -> Result<Response> {
    let mut feature = None;
    let mut quantity = None;
    for (name, value) in &query.0 {
        let slot_taken = match name.as_str() {
            SCOPING_PARAMETER => continue,
            "feature" => feature.replace(value.as_str()).is_some(),
            "quantity" => quantity.replace(value.as_str()).is_some(),
            _ => {
                return Err(Error::BadRequest(format!(
                    "Unknown query parameter `{name}`."
                )))
            }
        };
        if slot_taken {
            return Err(Error::BadRequest(format!("`{name}` is given twice.")));
        }
    }
    let feature = feature.ok_or_else(|| Error::BadRequest("`feature` is required.".into()))?;
    let feature = parse_feature(feature)?;
    let quantity = match quantity {
        None => 1,
        Some(q) => q
            .parse::<u64>()
            .map_err(|_| Error::invalid("quantity", "The quantity must be a whole number."))?,
    };
    let answer = entitlements::check(&state, &auth, feature, quantity).await?;
    Ok(axum::Json(answer).into_response())
}

/// Every feature's usage, limit, what is left and, for monthly ones, when it resets
/// (`entitlements:read`).
#[utoipa::path(get, path = "/entitlements/summary", tag = "entitlements",
    responses((status = 200, description = "`{data: {workspace_id, tier, entitlements: {<feature>: {used, limit, available, percentage, reset_at?, unit?}}}}`"),
        (status = 400, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn summary(State(state): State<AppState>, auth: Auth) -> Result<Response> {
    let data = entitlements::summary(&state, &auth).await?;
    Ok(axum::Json(json!({ "data": data })).into_response())
}
