//! `/api-keys`: create, list, get, patch, rotate, revoke, and a key's history.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pulsar_domain::api_key::{
    AllowlistEntry, ApiKey, ApiKeyCommand, ApiKeyPatch, ApiKeySettings, MAX_GRACE_HOURS,
};
use pulsar_domain::ids;
use pulsar_domain::keys::NewKey;
use pulsar_domain::scopes::ScopeName;
use pulsar_domain::scopes::{Action, Permission, Resource, ScopeSet};
use pulsar_domain::workspace::Tier;
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::list::{self, Column, ListSpec};
use pulsar_projections::{api_keys, key_table};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{CreatedOut, DataOut, ErrorOut, ListOut};
use crate::application::commands;
use crate::application::Auth;
use crate::application::{Error, Result};
use crate::http::extract::{double_option, ApiKeyIds, Json, OptionalJson, PathId, QueryPairs};
use crate::http::middleware::no_content;
use crate::http::openapi::{ListQuery, Listed};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, update_key, revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(key_history))
}

const READ: Permission = Permission(Resource::ApiKeys, Action::Read);
const WRITE: Permission = Permission(Resource::ApiKeys, Action::Write);
const DELETE: Permission = Permission(Resource::ApiKeys, Action::Delete);

/// Read models a key command must have reached before answering: the list, and this
/// process's key table (so the key works, or stops, at once).
const READ_MODELS: &[&str] = &[api_keys::NAME, key_table::NAME];

/// The `/api-keys` collection, for the document.
#[derive(Debug)]
pub struct ApiKeys;

impl Listed for ApiKeys {
    const SPEC: &'static ListSpec = &KEYS;
}

static KEYS: ListSpec = ListSpec {
    from: "api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id",
    item: "jsonb_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix, 'masked', k.masked,
            'scopes', to_jsonb(k.scopes), 'rate_limit_tier', k.rate_limit_tier,
            'ip_allowlist', to_jsonb(k.ip_allowlist), 'max_age_days', k.max_age_days,
            'expires_at', rfc3339(k.expires_at), 'last_used_at', rfc3339(u.last_used_at),
            'created_at', rfc3339(k.created_at), 'updated_at', rfc3339(k.updated_at),
            'created_by', with_actor_name(k.created_by), 'status', api_key_status(k, now()),
            'replaced_by', k.replaced_by, 'rotated_from', k.rotated_from, 'version', k.version,
            'grace_period_ends_at', rfc3339(k.grace_period_ends_at))",
    id: "k.id",
    sortable: &[
        Column {
            name: "name",
            sql: "k.name",
        },
        Column {
            name: "created_at",
            sql: "k.created_at",
        },
        Column {
            name: "updated_at",
            sql: "k.updated_at",
        },
        Column {
            name: "last_used_at",
            sql: "u.last_used_at",
        },
        Column {
            name: "expires_at",
            sql: "k.expires_at",
        },
    ],
    nullable: &["last_used_at", "expires_at"],
    filters: &[
        Column {
            name: "status",
            sql: "api_key_status(k, now())",
        },
        Column {
            name: "rate_limit_tier",
            sql: "k.rate_limit_tier",
        },
    ],
    created_at: Some("k.created_at"),
    updated_at: Some("k.updated_at"),
    search: Some("k.search"),
    fields: &[
        "id",
        "name",
        "prefix",
        "masked",
        "scopes",
        "rate_limit_tier",
        "ip_allowlist",
        "max_age_days",
        "expires_at",
        "last_used_at",
        "created_at",
        "updated_at",
        "created_by",
        "status",
        "replaced_by",
        "rotated_from",
        "grace_period_ends_at",
        "version",
    ],
    includes: &[],
    filter_values: &[
        ("status", &["active", "rotating", "expired", "revoked"]),
        ("rate_limit_tier", Tier::NAMES),
    ],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "-created_at",
};

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

/// One entry of a key's audit trail.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyHistoryOut {
    pub position: i64,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    #[schema(value_type = Object)]
    pub payload: Value,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub recorded_at: String,
}

async fn item(state: &AppState, workspace_id: &str, key_id: &str) -> Result<Value> {
    list::fetch_one(
        &state.pool,
        &KEYS,
        &[
            ("k.id", key_id.to_string()),
            ("k.workspace_id", workspace_id.to_string()),
        ],
    )
    .await?
    .ok_or_else(|| Error::not_found("API key"))
}

fn with_secret(
    mut item: Value,
    key: &NewKey,
    grace_period_ends_at: Option<DateTime<Utc>>,
) -> Value {
    if let Value::Object(map) = &mut item {
        map.insert("key".into(), json!(key.full()));
        map.insert("apiKey".into(), json!(key.api_key));
        map.insert("apiSecret".into(), json!(key.api_secret));
        if let Some(at) = grace_period_ends_at {
            map.insert(
                "grace_period_ends_at".into(),
                json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
        }
    }
    item
}

/// Stores a new key's secret hash and appends its creation; the secret row goes first so
/// the key table can never see a key without one, and is removed if the command fails.
async fn issue(
    state: &AppState,
    workspace_id: &str,
    settings: ApiKeySettings,
    created_by: Actor,
    rotated_from: Option<String>,
    grantor: ScopeSet,
    metadata: &EventMetadata,
) -> Result<(String, NewKey)> {
    let key = NewKey::generate();
    let key_id = ids::new_id(ids::prefix::API_KEY);
    sqlx::query("INSERT INTO api_key_secrets (key_id, public_id, secret_hash) VALUES ($1, $2, $3)")
        .bind(&key_id)
        .bind(&key.api_key)
        .bind(key.secret_hash().as_slice())
        .execute(&state.pool)
        .await?;
    let command = ApiKeyCommand::CreateApiKey {
        workspace_id: workspace_id.to_string(),
        public_id: key.api_key.clone(),
        prefix: key.display_prefix(),
        masked: key.masked(),
        settings,
        created_by,
        rotated_from,
        grantor,
        now: state.clock.now(),
    };
    if let Err(error) = state
        .commands
        .execute::<ApiKey>(&key_id, command, metadata, READ_MODELS)
        .await
    {
        sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1")
            .bind(&key_id)
            .execute(&state.pool)
            .await?;
        return Err(error);
    }
    Ok((key_id, key))
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
    auth.require(READ)?;
    super::list(
        &state,
        &KEYS,
        &uri,
        &query,
        &[("k.workspace_id", auth.workspace_id.clone())],
    )
    .await
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
    auth.require(WRITE)?;
    let settings = ApiKeySettings {
        name: input.name,
        scopes: input.scopes,
        ip_allowlist: input.ip_allowlist,
        expires_at: input.expires_at,
        max_age_days: input.max_age_days,
        rate_limit_tier: input.rate_limit_tier,
    };
    let (key_id, key) = issue(
        &state,
        &auth.workspace_id,
        settings,
        auth.principal.actor(),
        None,
        auth.scopes,
        &auth.metadata(),
    )
    .await?;
    let data = with_secret(item(&state, &auth.workspace_id, &key_id).await?, &key, None);
    Ok(super::created("API key created successfully.", data))
}

/// Get a key. Revoked and expired keys stay readable for audit.
#[utoipa::path(get, path = "/api-keys/{id}", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = DataOut<ApiKeyOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_key(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
) -> Result<Response> {
    auth.require(READ)?;
    Ok(super::data(item(&state, &auth.workspace_id, &id).await?))
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
    auth.require(WRITE)?;
    let expected = super::if_match(&headers)?;
    item(&state, &auth.workspace_id, &id).await?;
    let command = ApiKeyCommand::UpdateApiKey {
        workspace_id: auth.workspace_id.clone(),
        patch: ApiKeyPatch {
            name: input.name,
            scopes: input.scopes,
            ip_allowlist: input.ip_allowlist,
            expires_at: input.expires_at,
            max_age_days: input.max_age_days,
            rate_limit_tier: input.rate_limit_tier,
        },
        grantor: auth.scopes,
        now: state.clock.now(),
    };
    state
        .commands
        .execute_expecting::<ApiKey>(&id, command, &auth.metadata(), READ_MODELS, expected)
        .await?;
    Ok(super::data(item(&state, &auth.workspace_id, &id).await?))
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
    auth.require(WRITE)?;
    let hours = input.grace_period_hours.unwrap_or(24);
    let hours = u32::try_from(hours)
        .ok()
        .filter(|h| *h <= MAX_GRACE_HOURS)
        .ok_or_else(|| {
            Error::invalid(
                "grace_period_hours",
                format!("The grace period must be from 0 to {MAX_GRACE_HOURS} hours."),
            )
        })?;
    item(&state, &auth.workspace_id, &id).await?;
    let old: ApiKey = commands::load(&state.pool, &id).await?;
    if old.workspace_id() != Some(auth.workspace_id.as_str()) {
        return Err(Error::not_found("API key"));
    }
    let settings = old
        .current_settings()
        .cloned()
        .ok_or_else(|| Error::not_found("API key"))?;
    // The domain's rule, checked before the new key is issued (the rotation command
    // checks it again, authoritatively).
    old.may_rotate(auth.scopes)?;
    let metadata = auth.metadata();
    let now = state.clock.now();
    let (new_id, key) = issue(
        &state,
        &auth.workspace_id,
        ApiKeySettings {
            expires_at: settings.expires_at.filter(|at| *at > now),
            ..settings
        },
        auth.principal.actor(),
        Some(id.clone()),
        auth.scopes,
        &metadata,
    )
    .await?;
    let rotate = ApiKeyCommand::RotateApiKey {
        workspace_id: auth.workspace_id.clone(),
        rotator: auth.scopes,
        replaced_by: new_id.clone(),
        grace_period_hours: hours,
        now,
    };
    if let Err(error) = state
        .commands
        .execute::<ApiKey>(&id, rotate, &metadata, READ_MODELS)
        .await
    {
        // The old key could not be rotated (revoked or rotated meanwhile): the new one
        // must not outlive this failed request.
        state
            .commands
            .execute::<ApiKey>(
                &new_id,
                ApiKeyCommand::RevokeApiKey {
                    workspace_id: auth.workspace_id.clone(),
                },
                &metadata,
                READ_MODELS,
            )
            .await?;
        return Err(error);
    }
    let grace_end = now + chrono::Duration::hours(i64::from(hours));
    let data = with_secret(
        item(&state, &auth.workspace_id, &new_id).await?,
        &key,
        Some(grace_end),
    );
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
    auth.require(DELETE)?;
    let expected = super::if_match(&headers)?;
    item(&state, &auth.workspace_id, &id).await?;
    state
        .commands
        .execute_expecting::<ApiKey>(
            &id,
            ApiKeyCommand::RevokeApiKey {
                workspace_id: auth.workspace_id.clone(),
            },
            &auth.metadata(),
            READ_MODELS,
            expected,
        )
        .await?;
    sqlx::query("DELETE FROM sessions WHERE api_key_id = $1")
        .bind(&id)
        .execute(&state.pool)
        .await?;
    Ok(no_content())
}

/// A key's audit trail: every event of the key, in log order, with who did it.
#[utoipa::path(get, path = "/api-keys/{id}/history", tag = "api-keys", params(("id" = String, Path)),
    responses((status = 200, body = DataOut<Vec<KeyHistoryOut>>), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn key_history(
    State(state): State<AppState>,
    auth: Auth,
    PathId(id, _): PathId<ApiKeyIds>,
) -> Result<Response> {
    auth.require(READ)?;
    item(&state, &auth.workspace_id, &id).await?;
    let rows =
        pulsar_projections::log::history(&state.pool, <ApiKey as cqrs_es::Aggregate>::TYPE, &id)
            .await?;
    Ok(super::data(Value::Array(rows)))
}
