//! `/workspaces` and `/workspaces/{id}/members`.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pulsar_domain::scopes::Role;
use pulsar_domain::workspace::{SettingsPatch, Tier};
use pulsar_projections::identity;
use pulsar_projections::list::ListSpec;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{created, data, CreatedOut, DataOut, ErrorOut, ListOut};
use crate::application::AppState;
use crate::application::{workspaces, Principal, Result};
use crate::http::extract::{Json, MemberIds, PathId, PathIds, QueryPairs, WorkspaceIds};
use crate::http::middleware::no_content;
use crate::http::openapi::{AsOfQuery, ListQuery, Listed};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace, delete_workspace))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
}

/// The `/workspaces` and `/workspaces/{id}/members` collections, for the document.
#[derive(Debug)]
pub struct Workspaces;
#[derive(Debug)]
pub struct Members;

impl Listed for Workspaces {
    const SPEC: &'static ListSpec = &identity::WORKSPACES;
}

impl Listed for Members {
    const SPEC: &'static ListSpec = &identity::MEMBERS;
}

/// Workspace settings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettingsOut {
    #[schema(example = "Europe/Berlin")]
    pub timezone: String,
    #[schema(example = "de-DE")]
    pub locale: String,
}

/// Who created a resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedByOut {
    /// `user`, `api_key` or `system`.
    #[serde(rename = "type")]
    pub actor_type: String,
    pub id: String,
}

/// A workspace as its members see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceOut {
    #[schema(example = "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f")]
    pub id: String,
    pub name: String,
    pub slug: String,
    #[schema(value_type = String, example = "free")]
    pub tier: String,
    pub settings: SettingsOut,
    /// The public id for pixel tracking.
    pub pixel_id: String,
    /// The caller's role in this workspace.
    #[schema(example = "owner")]
    pub role: String,
    pub created_by: CreatedByOut,
    /// The aggregate version; also the `ETag`, for `If-Match` on PATCH and DELETE.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// A member of a workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOut {
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
    #[schema(example = "member")]
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /workspaces`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceIn {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
    )]
    pub name: String,
    /// 3 to 63 of `a-z`, `0-9` and `-`, starting and ending with a letter or digit;
    /// derived from the name when absent. Must be free.
    #[schema(pattern = r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")]
    pub slug: Option<String>,
    pub tier: Option<Tier>,
}

/// `settings` in `PATCH /workspaces/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatchIn {
    /// An IANA time zone name, e.g. `Europe/Berlin`.
    #[schema(
        max_length = 64,
        pattern = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z][A-Za-z0-9_+-]*)*$"
    )]
    pub timezone: Option<String>,
    /// A language tag, e.g. `en` or `pt-BR`.
    #[schema(
        max_length = 35,
        pattern = r"^[a-z]{2,3}(-([A-Z][A-Za-z]{3}|[A-Z]{2}|[0-9]{3}))*$"
    )]
    pub locale: Option<String>,
}

/// `PATCH /workspaces/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePatch {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
    )]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::http::extract::object_only")]
    pub settings: Option<SettingsPatchIn>,
    /// A new plan tier (owners only): its rate and feature limits apply on every node
    /// within a second.
    pub tier: Option<Tier>,
}

/// `POST /workspaces/{id}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberIn {
    /// A user who has signed up.
    #[schema(format = Email, max_length = 254, pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")]
    pub email: String,
    pub role: Role,
}

/// `PATCH /workspaces/{id}/members/{user_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    pub role: Role,
}

/// List the workspaces you belong to.
#[utoipa::path(get, path = "/workspaces", tag = "workspaces", params(ListQuery<Workspaces>),
    responses((status = 200, body = ListOut<WorkspaceOut>), (status = 400, body = ErrorOut), (status = 401, body = ErrorOut)),
    security(("bearer" = [])))]
async fn list_workspaces(
    State(state): State<AppState>,
    principal: Principal,
    OriginalUri(uri): OriginalUri,
    query: QueryPairs,
) -> Result<Response> {
    let request = super::list_request(&identity::WORKSPACES, &query)?;
    let page = workspaces::list(&state, &principal, &request).await?;
    Ok(super::list_response(&uri, &query, page))
}

/// Create a workspace; you become its owner.
#[utoipa::path(post, path = "/workspaces", tag = "workspaces", request_body = WorkspaceIn,
    responses((status = 201, body = CreatedOut<WorkspaceOut>), (status = 422, body = ErrorOut), (status = 403, body = ErrorOut)),
    security(("bearer" = [])))]
async fn create_workspace(
    State(state): State<AppState>,
    principal: Principal,
    Json(input): Json<WorkspaceIn>,
) -> Result<Response> {
    let new = workspaces::NewWorkspace {
        name: input.name,
        slug: input.slug,
        tier: input.tier.unwrap_or_default(),
    };
    let item = workspaces::create(&state, &principal, new).await?;
    Ok(created("Workspace created successfully.", item))
}

/// Get a workspace you belong to; `as_of` shows it as it stood at an instant.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path), AsOfQuery),
    responses((status = 200, body = DataOut<WorkspaceOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = [])))]
async fn get_workspace(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id, _): PathId<WorkspaceIds>,
    query: QueryPairs,
) -> Result<Response> {
    let at = super::as_of(&query)?;
    Ok(data(workspaces::get(&state, &principal, &id, at).await?))
}

/// Rename a workspace or change its settings (`workspaces:write`).
#[utoipa::path(patch, path = "/workspaces/{id}", tag = "workspaces", request_body = WorkspacePatch,
    params(("id" = String, Path)),
    responses((status = 200, body = DataOut<WorkspaceOut>), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = [])))]
async fn update_workspace(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id, _): PathId<WorkspaceIds>,
    headers: HeaderMap,
    Json(input): Json<WorkspacePatch>,
) -> Result<Response> {
    let expected = super::if_match(&headers)?;
    let change = workspaces::WorkspaceChange {
        name: input.name,
        settings: input.settings.map(|s| SettingsPatch {
            timezone: s.timezone,
            locale: s.locale,
        }),
        tier: input.tier,
    };
    Ok(data(
        workspaces::update(&state, &principal, &id, change, expected).await?,
    ))
}

/// Delete a workspace (`workspaces:delete`, owners only).
#[utoipa::path(delete, path = "/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = [])))]
async fn delete_workspace(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id, _): PathId<WorkspaceIds>,
    headers: HeaderMap,
) -> Result<Response> {
    let expected = super::if_match(&headers)?;
    workspaces::delete(&state, &principal, &id, expected).await?;
    Ok(no_content())
}

/// List a workspace's members.
#[utoipa::path(get, path = "/workspaces/{id}/members", tag = "workspaces",
    params(("id" = String, Path), ListQuery<Members>),
    responses((status = 200, body = ListOut<MemberOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = [])))]
async fn list_members(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id, _): PathId<WorkspaceIds>,
    OriginalUri(uri): OriginalUri,
    query: QueryPairs,
) -> Result<Response> {
    let request = super::list_request(&identity::MEMBERS, &query)?;
    let page = workspaces::members(&state, &principal, &id, &request).await?;
    Ok(super::list_response(&uri, &query, page))
}

/// Add an existing user to a workspace (`workspaces:write`).
#[utoipa::path(post, path = "/workspaces/{id}/members", tag = "workspaces", request_body = MemberIn,
    params(("id" = String, Path)),
    responses((status = 201, body = CreatedOut<MemberOut>), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut),
        (status = 409, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = [])))]
async fn add_member(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id, _): PathId<WorkspaceIds>,
    Json(input): Json<MemberIn>,
) -> Result<Response> {
    let item = workspaces::add_member(&state, &principal, &id, &input.email, input.role).await?;
    Ok(created("Member added successfully.", item))
}

/// Change a member's role (`workspaces:write`; only owners touch the owner role).
#[utoipa::path(patch, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces", request_body = MemberPatch,
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 200, body = DataOut<MemberOut>), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut),
        (status = 409, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = [])))]
async fn update_member(
    State(state): State<AppState>,
    principal: Principal,
    PathIds(id, user_id, _): PathIds<WorkspaceIds, MemberIds>,
    Json(input): Json<MemberPatch>,
) -> Result<Response> {
    Ok(data(
        workspaces::change_member(&state, &principal, &id, &user_id, input.role).await?,
    ))
}

/// Remove a member (`workspaces:write`; a workspace keeps at least one owner).
#[utoipa::path(delete, path = "/workspaces/{id}/members/{user_id}", tag = "workspaces",
    params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut), (status = 409, body = ErrorOut)),
    security(("bearer" = [])))]
async fn remove_member(
    State(state): State<AppState>,
    principal: Principal,
    PathIds(id, user_id, _): PathIds<WorkspaceIds, MemberIds>,
) -> Result<Response> {
    workspaces::remove_member(&state, &principal, &id, &user_id).await?;
    Ok(no_content())
}
