//! Workspace data over REST: the handlers every record collection shares (`/projects`,
//! `/tasks`, `/contacts`, `/companies`, `/deals`, `/documents`).
//!
//! Each collection is a [`Resource`]: its record kind, scope, list spec and the
//! references its fields hold. The handlers here do what is the same everywhere:
//! - scope checks (`<resource>:read|write|delete`), tenant scoping of every read;
//! - tier limits on creation (403 `feature_limit_reached`), from the live counts the
//!   projections keep;
//! - reference lookups: each referenced id is looked up in this workspace, and the
//!   aggregate decides what a missing one means (422 on the field);
//! - `If-Match` on PATCH and DELETE, `ETag` on every item answer;
//! - read-your-writes: a write answers after its read model has it.
//!
//! The per-collection modules ([`super::projects`] etc.) are thin, annotated wrappers,
//! so the OpenAPI document names each route and schema.

use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use pulsar_domain::ids;
use pulsar_domain::record::{LiveReferences, Record, RecordCommand, RecordKind};
use pulsar_domain::scopes::{self, Action, Permission};
use pulsar_domain::workspace::Tier;
use pulsar_domain::workspace_data::tier_limit;
use pulsar_projections::list::{self, ListRequest, ListSpec};
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::{Postgres, QueryBuilder, Row};
use utoipa::ToSchema;

use crate::application::Auth;
use crate::application::{Error, Result};
use crate::http::extract::{IdKind, QueryPairs};
use crate::http::middleware::no_content;
use crate::http::openapi::Listed;
use crate::state::AppState;

/// One collection of workspace data.
pub trait Resource: Send + Sync + 'static {
    type Kind: RecordKind;
    /// How answers name one item, e.g. `Project`.
    const LABEL: &'static str;
    /// The read model (table and subscriber) and the tier-limit feature, e.g. `projects`.
    const NAME: &'static str;
    /// The scope resource guarding it.
    const SCOPE: scopes::Resource;
    /// The list, filters, includes and item shape.
    const SPEC: &'static ListSpec;
    /// The table alias `SPEC` uses, e.g. `p`, for the id and tenant conditions.
    const ALIAS_ID: &'static str;
    const ALIAS_WORKSPACE: &'static str;
    /// For each reference field, where its id must be live.
    const REFERENCES: &'static [(&'static str, Target)];
}

/// A collection's item ids have its kind's prefix (`proj_…`).
impl<R: Resource> Listed for R {
    const SPEC: &'static ListSpec = R::SPEC;
}

impl<R: Resource> IdKind for R {
    const PREFIX: &'static str = <R::Kind as RecordKind>::ID_PREFIX;
    const LABEL: &'static str = R::LABEL;
}

/// Where a referenced id must be found, with a `workspace_id` column to scope it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub table: &'static str,
    pub column: &'static str,
    /// The id prefix of what it names: an id of another shape is never looked up.
    pub prefix: &'static str,
}

/// A member of the workspace.
pub const MEMBER: Target = Target {
    table: "workspace_members",
    column: "user_id",
    prefix: ids::prefix::USER,
};
pub const PROJECT: Target = Target {
    table: "projects",
    column: "id",
    prefix: <pulsar_domain::workspace_data::ProjectKind as RecordKind>::ID_PREFIX,
};
pub const COMPANY: Target = Target {
    table: "companies",
    column: "id",
    prefix: <pulsar_domain::workspace_data::CompanyKind as RecordKind>::ID_PREFIX,
};
pub const CONTACT: Target = Target {
    table: "contacts",
    column: "id",
    prefix: <pulsar_domain::workspace_data::ContactKind as RecordKind>::ID_PREFIX,
};

/// What every item carries besides its fields.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordMetaOut {
    #[schema(example = "proj_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f")]
    pub id: String,
    pub workspace_id: String,
    /// Who created it: `{type: user|api_key, id, name}`.
    #[schema(value_type = Object)]
    pub created_by: Value,
    pub created_at: String,
    pub updated_at: String,
    /// The aggregate version; also the `ETag`, for `If-Match` on PATCH and DELETE.
    pub version: i64,
}

/// An item: its fields plus [`RecordMetaOut`]. With `include`, each named relation is
/// embedded under its name (`null` when it no longer exists); `include=tags` turns
/// `tags` into `[{name, count}]`, `count` being the items of this kind with that tag.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordOut<F: ToSchema> {
    #[serde(flatten)]
    pub fields: F,
    #[serde(flatten)]
    pub meta: RecordMetaOut,
}

fn permission<R: Resource>(action: Action) -> Permission {
    Permission(R::SCOPE, action)
}

fn not_found<R: Resource>() -> Error {
    Error::not_found(R::LABEL)
}

async fn item<R: Resource>(state: &AppState, workspace_id: &str, id: &str) -> Result<Value> {
    list::fetch_one(
        &state.pool,
        R::SPEC,
        &[
            (R::ALIAS_ID, id.to_string()),
            (R::ALIAS_WORKSPACE, workspace_id.to_string()),
        ],
    )
    .await?
    .ok_or_else(not_found::<R>)
}

/// What a write needs to know about its workspace, read in one query.
struct Precheck {
    tier: Tier,
    /// Live items of this resource's kind.
    count: i64,
    /// Which of the candidate references are live in the workspace.
    live: LiveReferences,
}

/// One round trip: the workspace's tier and live count of this kind, and which of
/// `candidates` (`(field, id)`) name live aggregates of the right kind in it.
async fn precheck<R: Resource>(
    state: &AppState,
    workspace_id: &str,
    candidates: Vec<(String, String)>,
) -> Result<Precheck> {
    let mut qb = QueryBuilder::<Postgres>::new(
        "SELECT w.tier, coalesce((SELECT c.count FROM workspace_record_counts c
                                   WHERE c.workspace_id = w.id AND c.feature = ",
    );
    qb.push_bind(R::NAME).push("), 0) AS count");
    let mut checked = Vec::new();
    for (field, id) in candidates {
        let Some((_, target)) = R::REFERENCES.iter().find(|(f, _)| *f == field) else {
            continue;
        };
        if !ids::is_id(target.prefix, &id) {
            // Not an id at all: the aggregate refuses it by its shape.
            continue;
        }
        qb.push(format_args!(
            ", EXISTS (SELECT 1 FROM {} WHERE workspace_id = w.id AND {} = ",
            target.table, target.column
        ))
        .push_bind(id.clone())
        .push(format_args!(") AS ref{}", checked.len()));
        checked.push((field, id));
    }
    qb.push(" FROM workspaces w WHERE w.id = ")
        .push_bind(workspace_id);
    let row = qb
        .build()
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(|| Error::not_found("Workspace"))?;
    let mut live = LiveReferences::new();
    for (i, reference) in checked.into_iter().enumerate() {
        if row.try_get::<bool, _>(format!("ref{i}").as_str())? {
            live.insert(reference);
        }
    }
    let tier: String = row.try_get("tier")?;
    Ok(Precheck {
        tier: Tier::parse(&tier).unwrap_or_default(),
        count: row.try_get("count")?,
        live,
    })
}

/// 403 `feature_limit_reached` when the workspace holds as many as its tier allows.
///
/// The count is the projection's, so creations racing each other can overshoot the
/// limit by the number in flight; sequential clients never can.
fn check_limit<R: Resource>(state: &AppState, precheck: &Precheck) -> Result<()> {
    match tier_limit(precheck.tier, R::NAME) {
        Some(limit) if precheck.count >= limit => Err(Error::FeatureLimitReached {
            feature: R::NAME,
            limit,
            tier: precheck.tier.as_str(),
            upgrade_url: state.config.upgrade_url.clone(),
        }),
        _ => Ok(()),
    }
}

/// Runs a command on an existing record, answering "not found" in the resource's words.
async fn change<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    command: RecordCommand<R::Kind>,
    expected: Option<i64>,
) -> Result<()> {
    state
        .commands
        .execute_expecting::<Record<R::Kind>>(id, command, &auth.metadata(), &[R::NAME], expected)
        .await
        .map(|_| ())
        .map_err(|e| match e {
            Error::NotFound(_) => not_found::<R>(),
            other => other,
        })
}

/// `include=tags` for a collection with a `tags text[]` column: each tag with the number
/// of the workspace's items of that collection carrying it.
macro_rules! tags_include {
    ($table:literal, $alias:literal) => {
        pulsar_projections::list::Include {
            name: "tags",
            sql: concat!(
                "(SELECT coalesce(jsonb_agg(jsonb_build_object('name', tg.tag, 'count', ",
                "(SELECT count(*) FROM ",
                $table,
                " x WHERE x.workspace_id = ",
                $alias,
                ".workspace_id AND x.tags @> ARRAY[tg.tag])) ORDER BY tg.n), '[]'::jsonb) ",
                "FROM unnest(",
                $alias,
                ".tags) WITH ORDINALITY AS tg(tag, n))"
            ),
        }
    };
}
pub(crate) use tags_include;

/// An include of the workspace member named by `$alias.$column` (`null` when they are
/// no longer a member).
macro_rules! member_include {
    ($name:literal, $alias:literal, $column:literal) => {
        pulsar_projections::list::Include {
            name: $name,
            sql: concat!(
                "(SELECT jsonb_build_object('id', u.id, 'name', u.name, 'role', m.role) ",
                "FROM workspace_members m JOIN users u ON u.id = m.user_id ",
                "WHERE m.workspace_id = ",
                $alias,
                ".workspace_id AND m.user_id = ",
                $alias,
                ".",
                $column,
                ")"
            ),
        }
    };
}
pub(crate) use member_include;

pub async fn list<R: Resource>(
    state: &AppState,
    auth: &Auth,
    uri: &Uri,
    query: &QueryPairs,
) -> Result<Response> {
    auth.require(permission::<R>(Action::Read))?;
    super::list_counted(
        state,
        R::SPEC,
        uri,
        query,
        &[(R::ALIAS_WORKSPACE, auth.workspace_id.clone())],
        R::NAME,
    )
    .await
}

pub async fn get<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    query: &QueryPairs,
) -> Result<Response> {
    auth.require(permission::<R>(Action::Read))?;
    let request = ListRequest::item(R::SPEC, &query.0, &[super::SCOPING_PARAMETER])
        .map_err(Error::BadRequest)?;
    let scope = [
        (R::ALIAS_ID, id.to_string()),
        (R::ALIAS_WORKSPACE, auth.workspace_id.clone()),
    ];
    let item = list::fetch_item(&state.pool, R::SPEC, &request, &scope)
        .await?
        .ok_or_else(not_found::<R>)?;
    Ok(super::data(item))
}

pub async fn create<R: Resource>(
    state: &AppState,
    auth: &Auth,
    fields: <R::Kind as RecordKind>::Fields,
) -> Result<Response> {
    auth.require(permission::<R>(Action::Write))?;
    let candidates: Vec<(String, String)> = R::Kind::references(&fields)
        .into_iter()
        .map(|(field, id)| (field.to_string(), id))
        .collect();
    let precheck = precheck::<R>(state, &auth.workspace_id, candidates).await?;
    check_limit::<R>(state, &precheck)?;
    let live = precheck.live;
    let id = ids::new_id(R::Kind::ID_PREFIX);
    let command = RecordCommand::Create {
        workspace_id: auth.workspace_id.clone(),
        fields,
        created_by: auth.principal.actor(),
        live,
    };
    state
        .commands
        .create::<Record<R::Kind>>(&id, command, &auth.metadata(), &[R::NAME])
        .await?;
    let data = item::<R>(state, &auth.workspace_id, &id).await?;
    Ok(super::created(
        &format!("{} created successfully.", R::LABEL),
        data,
    ))
}

pub async fn update<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    headers: &HeaderMap,
    patch: Map<String, Value>,
) -> Result<Response> {
    auth.require(permission::<R>(Action::Write))?;
    let expected = super::if_match(headers)?;
    let candidates: Vec<(String, String)> = R::REFERENCES
        .iter()
        .filter_map(|(field, _)| {
            let id = patch.get(*field)?.as_str()?;
            Some((field.to_string(), id.trim().to_string()))
        })
        .collect();
    let live = if candidates.is_empty() {
        LiveReferences::new()
    } else {
        precheck::<R>(state, &auth.workspace_id, candidates)
            .await?
            .live
    };
    let command = RecordCommand::Update {
        workspace_id: auth.workspace_id.clone(),
        patch,
        live,
    };
    change::<R>(state, auth, id, command, expected).await?;
    Ok(super::data(item::<R>(state, &auth.workspace_id, id).await?))
}

pub async fn delete<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response> {
    auth.require(permission::<R>(Action::Delete))?;
    let expected = super::if_match(headers)?;
    let command = RecordCommand::Delete {
        workspace_id: auth.workspace_id.clone(),
    };
    change::<R>(state, auth, id, command, expected).await?;
    Ok(no_content())
}

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

        use super::records::{self, RecordOut};
        use super::{CreatedOut, DataOut, ErrorOut, ListOut};
        use crate::application::Auth;
        use crate::application::Result;
        use crate::http::extract::{Json, PathId, QueryPairs};
        use crate::http::openapi::{ItemQuery, ListQuery};
        use crate::state::AppState;

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
            records::list::<$resource>(&state, &auth, &uri, &query).await
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
            records::create::<$resource>(&state, &auth, fields).await
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
            records::get::<$resource>(&state, &auth, &id, &query).await
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
            records::update::<$resource>(&state, &auth, &id, &headers, patch).await
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
            records::delete::<$resource>(&state, &auth, &id, &headers).await
        }
    };
}

pub(crate) use record_routes;
