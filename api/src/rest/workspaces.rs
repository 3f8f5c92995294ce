//! `/workspaces` and `/workspaces/{id}/members`.

use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::scopes::{Action, Permission, Resource, Role};
use pulsar_domain::validate;
use pulsar_domain::workspace::{self, SettingsPatch, Tier, Workspace, WorkspaceCommand};
use pulsar_domain::{EventMetadata, ValidationErrors};
use pulsar_projections::list::{self, Column, ListSpec};
use pulsar_projections::{identity, key_table};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{created, data, CreatedOut, DataOut, ErrorOut, ListOut};
use crate::application::claims;
use crate::application::{Auth, Principal};
use crate::application::{Error, Result};
use crate::http::extract::{Json, MemberIds, PathId, PathIds, QueryPairs, WorkspaceIds};
use crate::http::middleware::no_content;
use crate::http::openapi::{ListQuery, Listed};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_workspaces, create_workspace))
        .routes(routes!(get_workspace, update_workspace, delete_workspace))
        .routes(routes!(list_members, add_member))
        .routes(routes!(update_member, remove_member))
}

const READ: Permission = Permission(Resource::Workspaces, Action::Read);
const WRITE: Permission = Permission(Resource::Workspaces, Action::Write);
const DELETE: Permission = Permission(Resource::Workspaces, Action::Delete);

/// The `/workspaces` and `/workspaces/{id}/members` collections, for the document.
#[derive(Debug)]
pub struct Workspaces;
#[derive(Debug)]
pub struct Members;

impl Listed for Workspaces {
    const SPEC: &'static ListSpec = &WORKSPACES;
}

impl Listed for Members {
    const SPEC: &'static ListSpec = &MEMBERS;
}

/// The workspaces a user belongs to, with their role in each.
static WORKSPACES: ListSpec = ListSpec {
    from: "workspaces w JOIN workspace_members m ON m.workspace_id = w.id",
    item: "jsonb_build_object('id', w.id, 'name', w.name, 'slug', w.slug, 'tier', w.tier,
            'settings', w.settings, 'pixel_id', w.pixel_id, 'role', m.role,
            'created_by', w.created_by, 'version', w.version,
            'created_at', rfc3339(w.created_at), 'updated_at', rfc3339(w.updated_at))",
    id: "w.id",
    sortable: &[
        Column {
            name: "name",
            sql: "w.name",
        },
        Column {
            name: "slug",
            sql: "w.slug",
        },
        Column {
            name: "tier",
            sql: "w.tier",
        },
        Column {
            name: "created_at",
            sql: "w.created_at",
        },
        Column {
            name: "updated_at",
            sql: "w.updated_at",
        },
    ],
    nullable: &[],
    filters: &[
        Column {
            name: "tier",
            sql: "w.tier",
        },
        Column {
            name: "role",
            sql: "m.role",
        },
    ],
    created_at: Some("w.created_at"),
    updated_at: Some("w.updated_at"),
    search: Some("w.search"),
    fields: &[
        "id",
        "name",
        "slug",
        "tier",
        "settings",
        "pixel_id",
        "role",
        "created_by",
        "version",
        "created_at",
        "updated_at",
    ],
    includes: &[],
    filter_values: &[("tier", Tier::NAMES), ("role", Role::NAMES)],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "created_at",
};

static MEMBERS: ListSpec = ListSpec {
    from: "workspace_members m JOIN users u ON u.id = m.user_id",
    item: "jsonb_build_object('user_id', m.user_id, 'email', u.email, 'name', u.name,
            'role', m.role, 'created_at', rfc3339(m.created_at),
            'updated_at', rfc3339(m.updated_at))",
    id: "m.user_id",
    sortable: &[
        Column {
            name: "email",
            sql: "u.email",
        },
        Column {
            name: "name",
            sql: "u.name",
        },
        Column {
            name: "role",
            sql: "m.role",
        },
        Column {
            name: "created_at",
            sql: "m.created_at",
        },
        Column {
            name: "updated_at",
            sql: "m.updated_at",
        },
    ],
    nullable: &["name"],
    filters: &[Column {
        name: "role",
        sql: "m.role",
    }],
    created_at: Some("m.created_at"),
    updated_at: Some("m.updated_at"),
    search: Some("to_tsvector('simple', u.email || ' ' || coalesce(u.name, ''))"),
    fields: &[
        "user_id",
        "email",
        "name",
        "role",
        "created_at",
        "updated_at",
    ],
    includes: &[],
    filter_values: &[("role", Role::NAMES)],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "created_at",
};

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

/// A key's own workspace: no membership, so no role.
static KEY_WORKSPACE: ListSpec = ListSpec {
    from: "workspaces w",
    item: "jsonb_build_object('id', w.id, 'name', w.name, 'slug', w.slug, 'tier', w.tier,
            'settings', w.settings, 'pixel_id', w.pixel_id, 'role', NULL,
            'created_by', w.created_by, 'version', w.version,
            'created_at', rfc3339(w.created_at), 'updated_at', rfc3339(w.updated_at))",
    id: "w.id",
    sortable: &[Column {
        name: "created_at",
        sql: "w.created_at",
    }],
    nullable: &[],
    filters: &[],
    created_at: None,
    updated_at: None,
    search: None,
    fields: &[],
    includes: &[],
    filter_values: &[],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "created_at",
};

/// One workspace as `principal` sees it.
async fn workspace_item(
    state: &AppState,
    workspace_id: &str,
    principal: &Principal,
) -> Result<Value> {
    let item = match principal.kind {
        crate::application::PrincipalKind::User => {
            list::fetch_one(
                &state.pool,
                &WORKSPACES,
                &[
                    ("w.id", workspace_id.to_string()),
                    ("m.user_id", principal.id.clone()),
                ],
            )
            .await?
        }
        crate::application::PrincipalKind::ApiKey(_) => {
            list::fetch_one(
                &state.pool,
                &KEY_WORKSPACE,
                &[("w.id", workspace_id.to_string())],
            )
            .await?
        }
    };
    item.ok_or_else(|| Error::not_found("Workspace"))
}

async fn member_item(state: &AppState, workspace_id: &str, user_id: &str) -> Result<Value> {
    list::fetch_one(
        &state.pool,
        &MEMBERS,
        &[
            ("m.workspace_id", workspace_id.to_string()),
            ("m.user_id", user_id.to_string()),
        ],
    )
    .await?
    .ok_or_else(|| Error::not_found("Member"))
}

/// Creates a workspace owned by `owner_id`; shared with sign-up. A given slug must be
/// free; a derived one gets a random suffix until it is.
pub async fn create_owned(
    state: &AppState,
    metadata: &EventMetadata,
    owner_id: &str,
    name: &str,
    slug: Option<&str>,
    tier: Tier,
    name_field: &str,
) -> Result<String> {
    let id = ids::new_id(prefix::WORKSPACE);
    let mut errors = ValidationErrors::new();
    errors.check(name_field, validate::required_text("name", name, 100));
    if let Some(slug) = slug {
        errors.check("slug", validate::slug(slug));
    }
    errors.into_result()?;
    let slug = match slug {
        Some(slug) => {
            if !claims::claim(&state.pool, claims::WORKSPACE_SLUG, slug, &id).await? {
                return Err(Error::invalid("slug", "The slug has already been taken."));
            }
            slug.to_string()
        }
        None => {
            let base = validate::slugify(name);
            let mut candidate = base.clone();
            let mut attempts = 0;
            while !claims::claim(&state.pool, claims::WORKSPACE_SLUG, &candidate, &id).await? {
                attempts += 1;
                if attempts > 8 {
                    return Err(Error::Conflict(
                        "Could not find a free slug; give one.".into(),
                    ));
                }
                candidate = format!("{base}-{}", &ids::new_id("x")[28..]);
            }
            candidate
        }
    };
    debug_assert!(workspace::validate_new(name, &slug).is_empty());
    let command = WorkspaceCommand::CreateWorkspace {
        name: name.to_string(),
        slug: slug.clone(),
        tier,
        pixel_id: ids::new_id(prefix::PIXEL),
        owner_id: owner_id.to_string(),
    };
    if let Err(error) = state
        .commands
        .execute::<Workspace>(&id, command, metadata, &[identity::NAME])
        .await
    {
        claims::release(&state.pool, claims::WORKSPACE_SLUG, &slug, &id).await?;
        return Err(error);
    }
    Ok(id)
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
    let scope = match &principal.kind {
        crate::application::PrincipalKind::User => vec![("m.user_id", principal.id.clone())],
        crate::application::PrincipalKind::ApiKey(_) => {
            return Err(Error::AccessDenied(
                "API keys act in their own workspace only.".into(),
            ))
        }
    };
    super::list(&state, &WORKSPACES, &uri, &query, &scope).await
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
    let user_id = principal
        .user_id()
        .ok_or_else(|| Error::AccessDenied("Only users can create workspaces.".into()))?;
    let id = create_owned(
        &state,
        &principal.metadata(),
        user_id,
        &input.name,
        input.slug.as_deref(),
        input.tier.unwrap_or_default(),
        "name",
    )
    .await?;
    Ok(created(
        "Workspace created successfully.",
        workspace_item(&state, &id, &principal).await?,
    ))
}

async fn member_auth(
    state: &AppState,
    principal: &Principal,
    id: &str,
    permission: Permission,
) -> Result<Auth> {
    let auth = principal.in_workspace(&state.pool, id).await?;
    auth.require(permission)?;
    Ok(auth)
}

/// Get a workspace you belong to.
#[utoipa::path(get, path = "/workspaces/{id}", tag = "workspaces",
    params(("id" = String, Path)),
    responses((status = 200, body = DataOut<WorkspaceOut>), (status = 404, body = ErrorOut)),
    security(("bearer" = [])))]
async fn get_workspace(
    State(state): State<AppState>,
    principal: Principal,
    PathId(id, _): PathId<WorkspaceIds>,
) -> Result<Response> {
    let auth = member_auth(&state, &principal, &id, READ).await?;
    Ok(data(workspace_item(&state, &id, &auth.principal).await?))
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
    let auth = member_auth(&state, &principal, &id, WRITE).await?;
    let command = WorkspaceCommand::UpdateWorkspace {
        name: input.name,
        settings: input.settings.map(|s| SettingsPatch {
            timezone: s.timezone,
            locale: s.locale,
        }),
        tier: input.tier,
        by: auth.acting_role(),
    };
    // The key table too: a tier change is in force here when this answers.
    state
        .commands
        .execute_expecting::<Workspace>(
            &id,
            command,
            &auth.metadata(),
            &[identity::NAME, key_table::NAME],
            expected,
        )
        .await?;
    Ok(data(workspace_item(&state, &id, &auth.principal).await?))
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
    let auth = member_auth(&state, &principal, &id, DELETE).await?;
    state
        .commands
        .execute_expecting::<Workspace>(
            &id,
            WorkspaceCommand::DeleteWorkspace,
            &auth.metadata(),
            // The key table too: the workspace's keys are dead here when this answers.
            &[identity::NAME, key_table::NAME],
            expected,
        )
        .await?;
    claims::release_all(&state.pool, claims::WORKSPACE_SLUG, &id).await?;
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
    member_auth(&state, &principal, &id, READ).await?;
    super::list(&state, &MEMBERS, &uri, &query, &[("m.workspace_id", id)]).await
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
    let auth = member_auth(&state, &principal, &id, WRITE).await?;
    let email = validate::normalize_email(&input.email);
    validate::email(&email).map_err(|m| Error::invalid("email", m))?;
    let user_id: String =
        sqlx::query_scalar("SELECT user_id FROM user_credentials WHERE email = $1")
            .bind(&email)
            .fetch_optional(&state.pool)
            .await?
            .ok_or_else(|| Error::invalid("email", "No user with this email address exists."))?;
    let command = WorkspaceCommand::AddMember {
        user_id: user_id.clone(),
        role: input.role,
        by: auth.acting_role(),
    };
    state
        .commands
        .execute::<Workspace>(&id, command, &auth.metadata(), &[identity::NAME])
        .await?;
    Ok(created(
        "Member added successfully.",
        member_item(&state, &id, &user_id).await?,
    ))
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
    let auth = member_auth(&state, &principal, &id, WRITE).await?;
    let command = WorkspaceCommand::ChangeMemberRole {
        user_id: user_id.clone(),
        role: input.role,
        by: auth.acting_role(),
    };
    state
        .commands
        .execute::<Workspace>(&id, command, &auth.metadata(), &[identity::NAME])
        .await?;
    Ok(data(member_item(&state, &id, &user_id).await?))
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
    let auth = member_auth(&state, &principal, &id, WRITE).await?;
    let command = WorkspaceCommand::RemoveMember {
        user_id,
        by: auth.acting_role(),
    };
    state
        .commands
        .execute::<Workspace>(&id, command, &auth.metadata(), &[identity::NAME])
        .await?;
    Ok(no_content())
}
