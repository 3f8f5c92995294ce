//! `/api-keys`: create, list, get, patch, rotate, revoke, and a key's history.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pulsar_domain::api_key::{AllowlistEntry, ApiKeyPatch, ApiKeySettings};
use pulsar_domain::scopes::ScopeName;
use pulsar_domain::workspace::Tier;
use pulsar_projections::api_keys;
use pulsar_projections::list::ListSpec;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{CreatedOut, DataOut, ErrorOut, ListOut};
use crate::application::api_keys as keys;
use crate::application::AppState;
use crate::application::{Auth, Result};
use crate::http::extract::{double_option, ApiKeyIds, Json, OptionalJson, PathId, QueryPairs};
use crate::http::middleware::no_content;
use crate::http::openapi::{AsOfQuery, ListQuery, Listed};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, update_key, revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(key_history))
}

/// The `/api-keys` collection, for the document.
#[derive(Debug)]
pub struct ApiKeys;

impl Listed for ApiKeys {
    const SPEC: &'static ListSpec = &api_keys::LIST;
}

/// Who created a key.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyCreatorOut {
    /// `user` or `api_key`.
    #[serde(rename = "type")]
    pub actor_type: String,
    pub id: String,
    pub name: Option<String>,
}

/// An API key as lists show it: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    #[schema(example = "key_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f")]
    pub id: String,
    pub name: String,
    /// The key's first characters.
    #[schema(example = "psk_4fQz")]
    pub prefix: String,
    #[schema(example = "psk_4fQz…x9Tb")]
    pub masked: String,
    #[schema(example = json!(["projects:read", "tasks:*"]))]
    pub scopes: Vec<String>,
    /// `null`: the workspace's tier.
    pub rate_limit_tier: Option<String>,
    #[schema(example = json!(["203.0.113.7", "10.0.0.0/8", "2001:db8::/32"]))]
    pub ip_allowlist: Vec<String>,
    pub max_age_days: Option<u32>,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: KeyCreatorOut,
    /// `active`, `rotating`, `expired` or `revoked`.
    pub status: String,
    /// The key that replaced this one by rotation.
    pub replaced_by: Option<String>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<String>,
    /// When this key stops after a rotation; in a rotate response, when the replaced
    /// key stops.
    pub grace_period_ends_at: Option<String>,
    /// The aggregate version; also the `ETag`, for `If-Match` on PATCH and DELETE.
    pub version: i64,
}

/// A key with its secret: only in the create and rotate responses.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeySecretOut {
    #[serde(flatten)]
    pub item: ApiKeyOut,
    /// The full key, `apiKey + "_" + apiSecret`. Shown once.
    pub key: String,
    #[serde(rename = "apiKey")]
    pub api_key: String,
    #[serde(rename = "apiSecret")]
    pub api_secret: String,
}

/// `POST /api-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
    )]
    pub name: String,
    /// At least one; none beyond the caller's own. Repeats are dropped.
    #[schema(min_items = 1, max_items = 64, value_type = Vec<ScopeName>)]
    pub scopes: Vec<String>,
    /// Default: the workspace's tier.
    pub rate_limit_tier: Option<Tier>,
    /// Must be in the future.
    pub expires_at: Option<DateTime<Utc>>,
    /// Exact IPs and CIDR ranges; empty allows every address.
    #[serde(default)]
    #[schema(max_items = 100, value_type = Vec<AllowlistEntry>)]
    pub ip_allowlist: Vec<String>,
    /// The key must be rotated before it is this many days old.
    #[schema(minimum = 1, maximum = 3650)]
    pub max_age_days: Option<u32>,
}

/// `PATCH /api-keys/{id}`: absent fields stay; `null` clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyPatchIn {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
    )]
    pub name: Option<String>,
    #[schema(min_items = 1, max_items = 64, value_type = Option<Vec<ScopeName>>)]
    pub scopes: Option<Vec<String>>,
    #[schema(max_items = 100, value_type = Option<Vec<AllowlistEntry>>)]
    pub ip_allowlist: Option<Vec<String>>,
    /// Must be in the future; `null` removes the expiry.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 3650)]
    pub max_age_days: Option<Option<u32>>,
    /// `null`: the workspace's tier.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Tier>)]
    pub rate_limit_tier: Option<Option<Tier>>,
}

/// `POST /api-keys/{id}/rotate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// 0 to 168, default 24: how long the old key keeps working.
    #[schema(minimum = 0, maximum = 168)]
    pub grace_period_hours: Option<i64>,
}

/// List the workspace's keys (search by name).
#[utoipa::path(get, path = "/api-keys", tag = "api-keys", params(ListQuery<ApiKeys>),
    responses((status = 200, body = ListOut<ApiKeyOut>), (status = 400, body = ErrorOut), (status = 401, body = ErrorOut), (status = 403, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_keys(
    State(state): State<AppState>,
    auth: Auth,
    OriginalUri(uri): OriginalUri,
    query: QueryPairs,
) -> Result<Response> {
    let request = super::list_request(&api_keys::LIST, &query)?;
    let page = keys::list(&state, &auth, &request).await?;
    Ok(super::list_response(&uri, &query, page))
}

/// Create a key. The full key is in this response only.
#[utoipa::path(post, path = "/api-keys", tag = "api-keys", request_body = ApiKeyIn,
    responses((status = 201, body = CreatedOut<ApiKeySecretOut>), (status = 403, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<ApiKeyIn>,
) -> Result<Response> {
    let settings = ApiKeySettings {
        name: input.name,
        scopes: input.scopes,
        ip_allowlist: input.ip_allowlist,
        expires_at: input.expires_at,
        max_age_days: input.max_age_days,
        rate_limit_tier: input.rate_limit_tier,
    };
    let issued = keys::create(&state, &auth, settings).await?;
    Ok(super::created(
        "API key created successfully.",
        issued.with_secret(None),
    ))
}

/// Get a key. Revoked and expired keys stay readable for audit; `as_of` shows the key
/// as it stood at an instant ("which scopes did it have that day").
#[utoipa::path(get, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path), AsOfQuery),
    responses((status = 200, body = DataOut<ApiKeyOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_key(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
    query: QueryPairs,
) -> Result<Response> {
    let at = super::as_of(&query)?;
    Ok(super::data(keys::get(&state, &auth, &id, at).await?))
}

/// Change a key's name, scopes, allowlist, expiry, age policy or tier.
#[utoipa::path(patch, path = "/api-keys/{id}", tag = "api-keys", request_body = ApiKeyPatchIn, params(("id" = String, Path)),
    responses((status = 200, body = DataOut<ApiKeyOut>), (status = 404, body = ErrorOut), (status = 409, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn update_key(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
    headers: HeaderMap,
    Json(input): Json<ApiKeyPatchIn>,
) -> Result<Response> {
    let expected = super::if_match(&headers)?;
    let patch = ApiKeyPatch {
        name: input.name,
        scopes: input.scopes,
        ip_allowlist: input.ip_allowlist,
        expires_at: input.expires_at,
        max_age_days: input.max_age_days,
        rate_limit_tier: input.rate_limit_tier,
    };
    Ok(super::data(
        keys::update(&state, &auth, &id, patch, expected).await?,
    ))
}

/// Rotate a key: a new key with the same settings; the old one keeps working for the
/// grace period (`rotating`), then stops by itself.
#[utoipa::path(post, path = "/api-keys/{id}/rotate", tag = "api-keys", request_body = Option<RotateIn>, params(("id" = String, Path)),
    responses((status = 200, body = CreatedOut<ApiKeySecretOut>), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut),
        (status = 409, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn rotate_key(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
    OptionalJson(input): OptionalJson<RotateIn>,
) -> Result<Response> {
    let (issued, grace_end) = keys::rotate(&state, &auth, &id, input.grace_period_hours).await?;
    let data = issued.with_secret(Some(grace_end));
    Ok((
        StatusCode::OK,
        axum::Json(json!({"message": "API key rotated successfully.", "data": data})),
    )
        .into_response())
}

/// Revoke a key: it stops working at once, on every server node.
#[utoipa::path(delete, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
    headers: HeaderMap,
) -> Result<Response> {
    let expected = super::if_match(&headers)?;
    keys::revoke(&state, &auth, &id, expected).await?;
    Ok(no_content())
}

/// A key's audit trail: its slice of `GET /audit/events`, in commit order.
#[utoipa::path(get, path = "/api-keys/{id}/history", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = DataOut<Vec<super::audit::AuditEventOut>>), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn key_history(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
) -> Result<Response> {
    let rows = keys::history(&state, &auth, &id).await?;
    Ok(super::data(Value::Array(rows)))
}
