//! REST resources, one module each; each exposes `router() -> OpenApiRouter<AppState>`.
//! Shared response shapes live here.

use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pulsar_projections::list::{ListRequest, ListSpec, Page};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::application::{Error, Result};
use crate::http::extract::QueryPairs;

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod companies;
pub mod contacts;
pub mod deals;
pub mod documents;
pub mod entitlements;
pub mod event_types;
pub mod mcp;
pub mod ops;
pub mod pixel;
pub mod projects;
pub mod records;
pub mod seo;
pub mod tasks;
pub mod usage;
pub mod webhooks;
pub mod workspaces;

/// The query parameter that names the workspace a request acts in (API.md section 1);
/// every authenticated route accepts it, so handlers parsing their own parameters let it
/// pass.
pub const SCOPING_PARAMETER: &str = "workspaceId";

/// API.md's error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorOut {
    /// Machine-readable code, e.g. `validation_failed`.
    #[schema(example = "validation_failed")]
    pub error: String,
    pub message: String,
    /// Per-field messages (422 only).
    #[schema(value_type = Option<Object>, example = json!({"name": ["The name field is required."]}))]
    pub errors: Option<Value>,
    /// Equals the `X-Request-ID` response header.
    pub request_id: String,
}

/// `meta` of a list response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListMeta {
    pub current_page: u32,
    pub from: Option<u64>,
    pub last_page: u32,
    pub per_page: u32,
    pub to: Option<u64>,
    pub total: i64,
}

/// `links` of a list response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListLinks {
    pub first: String,
    pub last: String,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListOut<T: ToSchema> {
    pub data: Vec<T>,
    pub meta: ListMeta,
    pub links: ListLinks,
}

/// One resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataOut<T: ToSchema> {
    pub data: T,
}

/// A creation's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOut<T: ToSchema> {
    #[schema(example = "Workspace created successfully.")]
    pub message: String,
    pub data: T,
}

fn page_link(uri: &Uri, pairs: &[(String, String)], page: u32) -> String {
    let mut query: Vec<(String, String)> = pairs
        .iter()
        .filter(|(name, _)| name != "page")
        .cloned()
        .collect();
    query.push(("page".into(), page.to_string()));
    let encoded = serde_urlencoded::to_string(&query).unwrap_or_default();
    format!("{}?{encoded}", uri.path())
}

/// The list response body for a page.
pub fn list_response(uri: &Uri, query: &QueryPairs, page: Page) -> Response {
    let last_page = page.last_page();
    let link = |n: u32| page_link(uri, &query.0, n);
    let body = json!({
        "meta": {
            "current_page": page.page,
            "from": page.from(),
            "last_page": last_page,
            "per_page": page.per_page,
            "to": page.to(),
            "total": page.total,
        },
        "links": {
            "first": link(1),
            "last": link(last_page),
            "prev": (page.page > 1).then(|| link((page.page - 1).min(last_page))),
            "next": (page.page < last_page).then(|| link(page.page + 1)),
        },
        "data": page.items,
    });
    axum::Json(body).into_response()
}

/// The list query a request's query string asks for, checked against `spec` (400 for
/// anything it does not know); the scoping parameter is for the authentication layer.
pub fn list_request(spec: &ListSpec, query: &QueryPairs) -> Result<ListRequest> {
    ListRequest::parse(spec, &query.0, &[SCOPING_PARAMETER]).map_err(Error::BadRequest)
}

/// The `fields` and `include` a single item's query string asks for (`as_of` is read by
/// [`as_of`]).
pub fn item_request(spec: &ListSpec, query: &QueryPairs) -> Result<ListRequest> {
    ListRequest::item(spec, &query.0, &[SCOPING_PARAMETER, AS_OF]).map_err(Error::BadRequest)
}

const AS_OF: &str = "as_of";

/// The instant `?as_of=` names, if any (400 unless RFC 3339). Which names a route takes
/// at all is the edge's business ([`crate::http::edge`]).
pub fn as_of(query: &QueryPairs) -> Result<Option<DateTime<Utc>>> {
    query
        .get(AS_OF)
        .map(|value| {
            DateTime::parse_from_rfc3339(value)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|_| {
                    Error::BadRequest(
                        "`as_of` must be an RFC 3339 time, e.g. 2026-12-01T09:30:00Z.".into(),
                    )
                })
        })
        .transpose()
}

/// `{"data": item}`, with the item's `version` as its `ETag`.
pub fn data(item: Value) -> Response {
    let etag = etag_of(&item);
    let mut response = axum::Json(json!({ "data": item })).into_response();
    if let Some(etag) = etag {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, etag);
    }
    response
}

fn etag_of(item: &Value) -> Option<axum::http::HeaderValue> {
    let version = item.get("version")?.as_i64()?;
    axum::http::HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

/// The version an `If-Match` header names: `None` without one or for `*`; 400 when it
/// is not an ETag this API issued (`"<n>"`, optionally weak).
pub fn if_match(headers: &axum::http::HeaderMap) -> Result<Option<i64>> {
    let Some(value) = headers.get(axum::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| {
            Error::BadRequest("If-Match must be an ETag from this API, e.g. \"3\".".into())
        })
}

/// 201 `{"message": ..., "data": item}`, with the item's `ETag`.
pub fn created(message: &str, item: Value) -> Response {
    let etag = etag_of(&item);
    let mut response = (
        StatusCode::CREATED,
        axum::Json(json!({ "message": message, "data": item })),
    )
        .into_response();
    if let Some(etag) = etag {
        response
            .headers_mut()
            .insert(axum::http::header::ETAG, etag);
    }
    response
}
