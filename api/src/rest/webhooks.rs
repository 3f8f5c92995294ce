//! `/webhooks`: endpoints (CRUD, secret rotation, test), their deliveries (list, detail,
//! retry), recover and replay. Each handler extracts, calls the use case in
//! [`crate::application::webhooks`], and renders.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use pulsar_domain::webhook::{WebhookPatch, WebhookSettings};
use pulsar_projections::list::ListSpec;
use pulsar_projections::webhooks;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{CreatedOut, DataOut, ErrorOut, ListOut};
use crate::application::webhooks as hooks;
use crate::application::AppState;
use crate::application::{Auth, Result};
use crate::http::extract::{
    double_option, DeliveryIds, Json, OptionalJson, PathId, PathIds, QueryPairs, WebhookIds,
};
use crate::http::middleware::no_content;
use crate::http::openapi::{AsOfQuery, ListQuery, Listed};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(rotate_secret))
        .routes(routes!(test_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
        .routes(routes!(recover))
        .routes(routes!(replay))
}

/// The `/webhooks` collection, for the document.
#[derive(Debug)]
pub struct Webhooks;

impl Listed for Webhooks {
    const SPEC: &'static ListSpec = &webhooks::LIST;
}

/// The `/webhooks/{id}/deliveries` collection, for the document.
#[derive(Debug)]
pub struct Deliveries;

impl Listed for Deliveries {
    const SPEC: &'static ListSpec = &webhooks::DELIVERIES;
}

/// An endpoint: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    #[schema(example = "wh_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f")]
    pub id: String,
    #[schema(example = "https://example.com/hooks/pulsar")]
    pub url: String,
    pub description: Option<String>,
    #[schema(example = json!(["projects.*", "tasks.created"]))]
    pub events: Vec<String>,
    pub is_active: bool,
    /// Why the dispatcher disabled it, while it is disabled.
    pub disabled_reason: Option<String>,
    /// Deliveries per second at most; `null` for no limit.
    pub rate_limit: Option<u32>,
    pub success_count: i64,
    pub failure_count: i64,
    /// Failed attempts since the last success.
    pub consecutive_failures: i64,
    pub last_delivery_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The aggregate version; also the `ETag`, for `If-Match` on PATCH and DELETE.
    pub version: i64,
}

/// An endpoint with its signing secret: only in the create and rotate responses.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecretOut {
    #[serde(flatten)]
    pub item: WebhookOut,
    /// `whsec_` + base64 of 32 random bytes. Shown once.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// `POST /webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookIn {
    /// HTTPS (HTTP only where the operator allows it); not a private or reserved
    /// address.
    #[schema(max_length = 2048, example = "https://example.com/hooks/pulsar")]
    pub url: String,
    /// Event types (`GET /event-types`) or wildcards (`projects.*`, `*`).
    #[schema(min_items = 1, max_items = 50, example = json!(["projects.*"]))]
    pub events: Vec<String>,
    /// Your own `whsec_` secret (base64 of 24 to 64 bytes); generated when absent.
    pub secret: Option<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Deliveries per second at most (1 to 10,000); beyond it deliveries wait.
    #[schema(minimum = 1, maximum = 10000)]
    pub rate_limit: Option<u32>,
}

/// `PATCH /webhooks/{id}`: absent fields stay; `null` clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatchIn {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 50)]
    pub events: Option<Vec<String>>,
    /// `true` on a disabled endpoint activates it and clears `disabled_reason`.
    pub is_active: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 500)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10000)]
    pub rate_limit: Option<Option<u32>>,
}

/// `POST /webhooks/{id}/rotate-secret`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretIn {
    /// 0 to 168, default 24: how long the previous secret keeps signing beside the new.
    #[schema(minimum = 0, maximum = 168)]
    pub grace_period_hours: Option<i64>,
}

/// `POST /webhooks/{id}/test` → the outcome of one real delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestOut {
    pub success: bool,
    pub status_code: Option<u16>,
    pub response_time_ms: i64,
    pub response_body: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A delivery of one event to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    #[schema(example = "dlv_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f")]
    pub id: String,
    /// The event's id: also the `webhook-id` header, the same on every attempt.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `retrying`, `success`, `failed` or `dead`.
    pub status: String,
    pub response_code: Option<i32>,
    /// Attempts made.
    pub attempt: i32,
    pub next_retry_at: Option<String>,
    pub delivered_at: Option<String>,
    pub created_at: String,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub number: i32,
    pub status_code: Option<i32>,
    pub duration_ms: i32,
    pub error: Option<String>,
    pub attempted_at: String,
}

/// A delivery with its request, its last response and every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetailOut {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// The body as sent (the public event).
    #[schema(value_type = Object)]
    pub request_body: Value,
    /// The last response's first 4 KiB.
    pub response_body: Option<String>,
    pub attempts: Vec<AttemptOut>,
}

/// `{id, status, attempt}` of a delivery queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetriedOut {
    pub id: String,
    pub status: String,
    pub attempt: i32,
}

/// `POST /webhooks/{id}/recover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Deliveries created at or after this instant.
    pub since: DateTime<Utc>,
    /// Before this instant; default now.
    pub until: Option<DateTime<Utc>>,
}

/// `POST /webhooks/{id}/replay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// Events recorded at or after this instant (back to the workspace's first event).
    pub since: DateTime<Utc>,
    /// Before this instant; default now.
    pub until: Option<DateTime<Utc>>,
    /// Narrow to these types or wildcards; default all the endpoint subscribes to.
    #[schema(max_items = 50)]
    pub event_types: Option<Vec<String>>,
}

/// `{queued}`: how many deliveries were queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedOut {
    pub queued: u64,
}

fn with_secret(mut item: Value, secret: String) -> Value {
    item["secret"] = json!(secret);
    item
}

fn accepted(queued: u64) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({ "data": { "queued": queued } })),
    )
        .into_response()
}

/// List the workspace's endpoints, with their delivery counters.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(ListQuery<Webhooks>),
    responses((status = 200, body = ListOut<WebhookOut>), (status = 400, body = ErrorOut), (status = 401, body = ErrorOut), (status = 403, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_webhooks(
    State(state): State<AppState>,
    auth: Auth,
    OriginalUri(uri): OriginalUri,
    query: QueryPairs,
) -> Result<Response> {
    let request = super::list_request(&webhooks::LIST, &query)?;
    let page = hooks::list(&state, &auth, &request).await?;
    Ok(super::list_response(&uri, &query, page))
}

/// Create an endpoint. The signing secret is in this response only.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = WebhookIn,
    responses((status = 201, body = CreatedOut<WebhookSecretOut>), (status = 403, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn create_webhook(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<WebhookIn>,
) -> Result<Response> {
    let settings = WebhookSettings {
        url: input.url,
        events: input.events,
        description: input.description,
        rate_limit: input.rate_limit,
    };
    let (item, secret) = hooks::create(&state, &auth, settings, input.secret).await?;
    Ok(super::created(
        "Webhook created successfully.",
        with_secret(item, secret),
    ))
}

/// Get an endpoint; `as_of` shows it as it stood at an instant.
#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path), AsOfQuery),
    responses((status = 200, body = DataOut<WebhookOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_webhook(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    query: QueryPairs,
) -> Result<Response> {
    let at = super::as_of(&query)?;
    Ok(super::data(hooks::get(&state, &auth, &id, at).await?))
}

/// Change an endpoint; `is_active: true` re-enables a disabled one.
#[utoipa::path(patch, path = "/webhooks/{id}", tag = "webhooks", request_body = WebhookPatchIn, params(("id" = String, Path)),
    responses((status = 200, body = DataOut<WebhookOut>), (status = 404, body = ErrorOut), (status = 412, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn update_webhook(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    headers: HeaderMap,
    Json(input): Json<WebhookPatchIn>,
) -> Result<Response> {
    let expected = super::if_match(&headers)?;
    let patch = WebhookPatch {
        url: input.url,
        events: input.events,
        description: input.description,
        rate_limit: input.rate_limit,
        is_active: input.is_active,
    };
    Ok(super::data(
        hooks::update(&state, &auth, &id, patch, expected).await?,
    ))
}

/// Delete an endpoint: nothing more is delivered to it.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn delete_webhook(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    headers: HeaderMap,
) -> Result<Response> {
    let expected = super::if_match(&headers)?;
    hooks::delete(&state, &auth, &id, expected).await?;
    Ok(no_content())
}

/// Rotate the signing secret; the previous one keeps signing beside the new one for the
/// grace period.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks", request_body = Option<RotateSecretIn>, params(("id" = String, Path)),
    responses((status = 200, body = CreatedOut<WebhookSecretOut>), (status = 404, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn rotate_secret(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    OptionalJson(input): OptionalJson<RotateSecretIn>,
) -> Result<Response> {
    let (item, secret, until) =
        hooks::rotate_secret(&state, &auth, &id, input.grace_period_hours).await?;
    let mut data = with_secret(item, secret);
    data["previous_secret_valid_until"] = json!(until.to_rfc3339_opts(SecondsFormat::Millis, true));
    Ok(
        axum::Json(json!({"message": "Webhook secret rotated successfully.", "data": data}))
            .into_response(),
    )
}

/// Send a `webhooks.test` event to the endpoint now and report what came back.
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks", params(("id" = String, Path)),
    responses((status = 200, body = TestOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn test_webhook(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
) -> Result<Response> {
    Ok(axum::Json(hooks::test(&state, &auth, &id).await?).into_response())
}

/// List an endpoint's deliveries (`status` filter: pending, retrying, success, failed,
/// dead).
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", tag = "webhooks", params(("id" = String, Path), ListQuery<Deliveries>),
    responses((status = 200, body = ListOut<DeliveryOut>), (status = 400, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    OriginalUri(uri): OriginalUri,
    query: QueryPairs,
) -> Result<Response> {
    let request = super::list_request(&webhooks::DELIVERIES, &query)?;
    let page = hooks::deliveries(&state, &auth, &id, &request).await?;
    Ok(super::list_response(&uri, &query, page))
}

/// A delivery with the request body, the last response body and every attempt.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries/{delivery_id}", tag = "webhooks",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = DataOut<DeliveryDetailOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_delivery(
    State(state): State<AppState>,
    auth: Auth,
    PathIds(id, delivery_id, _): PathIds<WebhookIds, DeliveryIds>,
) -> Result<Response> {
    Ok(super::data(
        hooks::delivery(&state, &auth, &id, &delivery_id).await?,
    ))
}

/// Queue a delivery again now (400 `cannot_retry` once it succeeded).
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 200, body = CreatedOut<RetriedOut>), (status = 400, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn retry_delivery(
    State(state): State<AppState>,
    auth: Auth,
    PathIds(id, delivery_id, _): PathIds<WebhookIds, DeliveryIds>,
) -> Result<Response> {
    let data = hooks::retry(&state, &auth, &id, &delivery_id).await?;
    Ok(axum::Json(json!({"message": "Delivery queued for retry.", "data": data})).into_response())
}

/// Queue again, once, the endpoint's failed and dead deliveries created in a window (for
/// a receiver back from an outage).
#[utoipa::path(post, path = "/webhooks/{id}/recover", tag = "webhooks", request_body = RecoverIn, params(("id" = String, Path)),
    responses((status = 202, body = DataOut<QueuedOut>), (status = 404, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn recover(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    Json(input): Json<RecoverIn>,
) -> Result<Response> {
    let queued = hooks::recover(&state, &auth, &id, input.since, input.until).await?;
    Ok(accepted(queued))
}

/// Deliver again every stored event of the workspace in a window that the endpoint
/// subscribes to, from the event log (back to the workspace's first event).
#[utoipa::path(post, path = "/webhooks/{id}/replay", tag = "webhooks", request_body = ReplayIn, params(("id" = String, Path)),
    responses((status = 202, body = DataOut<QueuedOut>), (status = 404, body = ErrorOut), (status = 409, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn replay(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<WebhookIds>,
    Json(input): Json<ReplayIn>,
) -> Result<Response> {
    let queued = hooks::replay(
        &state,
        &auth,
        &id,
        input.since,
        input.until,
        input.event_types.unwrap_or_default(),
    )
    .await?;
    Ok(accepted(queued))
}
