//! The router: every route, layer and the OpenAPI document, separate from `main` so tests
//! drive the real thing.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::application::AppState;
use crate::http::edge::{self, QueryRules};
use crate::http::middleware::{self, not_found};
use crate::http::openapi::ApiDoc;
use crate::rest;

/// The OpenAPI document and the `/api/v1` routes it describes.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(rest::auth::router())
        .merge(rest::workspaces::router())
        .merge(rest::api_keys::router())
        .merge(rest::projects::router())
        .merge(rest::tasks::router())
        .merge(rest::contacts::router())
        .merge(rest::companies::router())
        .merge(rest::deals::router())
        .merge(rest::documents::router())
        .merge(rest::event_types::router())
        .merge(rest::webhooks::router())
        .merge(rest::audit::router())
        .merge(rest::entitlements::router())
        .merge(rest::usage::router())
        .merge(rest::seo::router())
        .merge(rest::pixel::router())
        .merge(rest::mcp::router())
        .split_for_parts();
    crate::http::openapi::scoping_parameters(&mut openapi);
    (router, openapi)
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let (api, mut openapi) = api();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_string();
    let rules = Arc::new(QueryRules::from_openapi(&openapi, "/api/v1"));
    let openapi_json =
        serde_json::to_string_pretty(&crate::http::openapi::finish(&openapi)).unwrap_or_default();
    let api = api.route(
        "/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], openapi_json) }),
    );
    // Authentication runs first (outermost), so idempotency knows the principal.
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::idempotency::idempotency,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::authenticate::authenticate,
        ));
    Router::new()
        .nest("/api/v1", api)
        .merge(rest::ops::router())
        .merge(crate::mcp::router(state.clone()))
        .route(
            "/docs",
            get(|| async { Html(include_str!("docs.html")).into_response() }),
        )
        .fallback(not_found)
        .route_layer(axum::middleware::from_fn_with_state(rules, edge::guard))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::request_context,
        ))
        .with_state(state)
}
