//! Workspace data over REST: the routes every record collection shares (`/projects`,
//! `/tasks`, `/contacts`, `/companies`, `/deals`, `/documents`), as adapters of the
//! use cases in [`crate::application::records`]: extract (typed path ids, the list
//! query, `If-Match`, strict JSON), call, render (`ETag`, links, 201/204).
//!
//! The per-collection modules ([`super::projects`] etc.) invoke [`record_routes`], so
//! the OpenAPI document names each route and schema.

use pulsar_domain::record::RecordKind;
use pulsar_projections::list::ListSpec;

use crate::application::records::Resource;
use crate::http::extract::IdKind;
use crate::http::openapi::Listed;

/// A collection's item ids have its kind's prefix (`proj_…`).
impl<R: Resource> Listed for R {
    const SPEC: &'static ListSpec = R::SPEC;
}

impl<R: Resource> IdKind for R {
    const PREFIX: &'static str = <R::Kind as RecordKind>::ID_PREFIX;
    const LABEL: &'static str = R::LABEL;
}

pub use crate::application::records::{RecordMetaOut, RecordOut};

/// Declares one collection's annotated routes; the handlers above do the work.
///
/// Its list and item query parameters are documented from its `ListSpec`.
macro_rules! record_routes {
    (
        resource: $resource:ty,
        fields: $fields:ty,
        path: $path:tt,
        item_path: $item_path:tt,
        tag: $tag:tt $(,)?
    ) => {
        use axum::extract::{OriginalUri, State};
        use axum::http::HeaderMap;
        use axum::response::Response;
        use serde_json::{Map, Value};
        use utoipa_axum::router::OpenApiRouter;
        use utoipa_axum::routes;

        use super::records::RecordOut;
        use super::{CreatedOut, DataOut, ErrorOut, ListOut};
        use crate::application::records;
        use crate::application::Auth;
        use crate::application::Result;
        use crate::http::middleware::no_content;
        use crate::http::extract::{Json, PathId, QueryPairs};
        use crate::http::openapi::{ItemQuery, ListQuery};
        use crate::application::AppState;

        pub fn router() -> OpenApiRouter<AppState> {
            OpenApiRouter::new()
                .routes(routes!(list, create))
                .routes(routes!(get, update, delete))
        }

        /// List, filter, search, sort and page.
        #[utoipa::path(get, path = $path, tag = $tag, params(ListQuery<$resource>),
            responses((status = 200, body = ListOut<RecordOut<$fields>>), (status = 400, body = ErrorOut),
                (status = 401, body = ErrorOut), (status = 403, body = ErrorOut)),
            security(("bearer" = []), ("api_key_pair" = [])))]
        async fn list(
            State(state): State<AppState>,
            auth: Auth,
            OriginalUri(uri): OriginalUri,
            query: QueryPairs,
        ) -> Result<Response> {
            let request = super::list_request(<$resource as records::Resource>::SPEC, &query)?;
            let page = records::list::<$resource>(&state, &auth, &request).await?;
            Ok(super::list_response(&uri, &query, page))
        }

        /// Create one. Beyond the workspace tier's limit: 403 `feature_limit_reached`.
        #[utoipa::path(post, path = $path, tag = $tag, request_body = $fields,
            responses((status = 201, body = CreatedOut<RecordOut<$fields>>), (status = 403, body = ErrorOut),
                (status = 422, body = ErrorOut)),
            security(("bearer" = []), ("api_key_pair" = [])))]
        async fn create(
            State(state): State<AppState>,
            auth: Auth,
            Json(fields): Json<$fields>,
        ) -> Result<Response> {
            let item = records::create::<$resource>(&state, &auth, fields).await?;
            Ok(super::created(
                &format!("{} created successfully.", <$resource as records::Resource>::LABEL),
                item,
            ))
        }

        /// Get one (another workspace's ids are 404).
        #[utoipa::path(get, path = $item_path, tag = $tag, params(("id" = String, Path),
                ItemQuery<$resource>),
            responses((status = 200, body = DataOut<RecordOut<$fields>>), (status = 404, body = ErrorOut)),
            security(("bearer" = []), ("api_key_pair" = [])))]
        async fn get(
            State(state): State<AppState>,
            auth: Auth,
            PathId(id, _): PathId<$resource>,
            query: QueryPairs,
        ) -> Result<Response> {
            let request = super::item_request(<$resource as records::Resource>::SPEC, &query)?;
            let at = super::as_of(&query)?;
            Ok(super::data(records::get::<$resource>(&state, &auth, &id, &request, at).await?))
        }

        /// Change some fields: absent ones stay, `null` clears an optional one.
        /// `If-Match` with the item's `ETag` makes it conditional (412 when stale).
        #[utoipa::path(patch, path = $item_path, tag = $tag, params(("id" = String, Path)),
            request_body(content = $fields, description = "any subset of the fields"),
            responses((status = 200, body = DataOut<RecordOut<$fields>>), (status = 404, body = ErrorOut),
                (status = 412, body = ErrorOut), (status = 422, body = ErrorOut)),
            security(("bearer" = []), ("api_key_pair" = [])))]
        async fn update(
            State(state): State<AppState>,
            auth: Auth,
            PathId(id, _): PathId<$resource>,
            headers: HeaderMap,
            Json(patch): Json<Map<String, Value>>,
        ) -> Result<Response> {
            let expected = super::if_match(&headers)?;
            Ok(super::data(
                records::update::<$resource>(&state, &auth, &id, patch, expected).await?,
            ))
        }

        /// Delete one. `If-Match` makes it conditional (412 when stale).
        #[utoipa::path(delete, path = $item_path, tag = $tag, params(("id" = String, Path)),
            responses((status = 204), (status = 404, body = ErrorOut), (status = 412, body = ErrorOut)),
            security(("bearer" = []), ("api_key_pair" = [])))]
        async fn delete(
            State(state): State<AppState>,
            auth: Auth,
            PathId(id, _): PathId<$resource>,
            headers: HeaderMap,
        ) -> Result<Response> {
            let expected = super::if_match(&headers)?;
            records::delete::<$resource>(&state, &auth, &id, expected).await?;
            Ok(no_content())
        }
    };
}

pub(crate) use record_routes;
