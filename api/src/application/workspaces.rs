//! Workspaces and their members: the use cases behind `/workspaces` and
//! `/workspaces/{id}/members`, for any adapter.
//!
//! A user acts in the workspaces they are members of, with their role's scopes there; a
//! key acts only in its own workspace. Another workspace does not exist for a caller
//! (404). Roles' rules (an owner always remains, only owners touch the owner role and
//! the tier) are the `Workspace` aggregate's.

use chrono::{DateTime, Utc};
use pulsar_domain::entitlements::Feature;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::scopes::{Action, Permission, Resource, Role};
use pulsar_domain::validate;
use pulsar_domain::workspace::{self, SettingsPatch, Tier, Workspace, WorkspaceCommand};
use pulsar_domain::{EventMetadata, ValidationErrors};
use pulsar_projections::list::{self, ListRequest, Page};
use pulsar_projections::{identity, key_table};
use serde_json::Value;

use crate::application::{as_of, AppState};
use crate::application::{claims, identity as accounts};
use crate::application::{Auth, Error, Principal, PrincipalKind, Result};

const READ: Permission = Permission(Resource::Workspaces, Action::Read);
const WRITE: Permission = Permission(Resource::Workspaces, Action::Write);
const DELETE: Permission = Permission(Resource::Workspaces, Action::Delete);

/// A new workspace.
#[derive(Debug, Clone)]
pub struct NewWorkspace {
    pub name: String,
    /// Derived from the name when absent; must be free when given.
    pub slug: Option<String>,
    pub tier: Tier,
}

/// A change to a workspace: absent parts stay.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceChange {
    pub name: Option<String>,
    pub settings: Option<SettingsPatch>,
    /// An owner's act.
    pub tier: Option<Tier>,
}

/// One workspace as `principal` sees it.
async fn workspace_item(
    state: &AppState,
    workspace_id: &str,
    principal: &Principal,
) -> Result<Value> {
    let item = match principal.kind {
        PrincipalKind::User => {
            list::fetch_one(
                &state.pool,
                &identity::WORKSPACES,
                &[
                    ("w.id", workspace_id.to_string()),
                    ("m.user_id", principal.id.clone()),
                ],
            )
            .await?
        }
        PrincipalKind::ApiKey(_) => {
            list::fetch_one(
                &state.pool,
                &identity::KEY_WORKSPACE,
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
        &identity::MEMBERS,
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

/// The principal's authority in workspace `id`, or 404 when it may not act there.
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

/// The workspaces a user belongs to, with their role in each (keys act in their own
/// workspace only and cannot list).
pub async fn list(state: &AppState, principal: &Principal, request: &ListRequest) -> Result<Page> {
    let PrincipalKind::User = principal.kind else {
        return Err(Error::AccessDenied(
            "API keys act in their own workspace only.".into(),
        ));
    };
    Ok(list::fetch(
        &state.pool,
        &identity::WORKSPACES,
        request,
        &[("m.user_id", principal.id.clone())],
    )
    .await?)
}

/// One workspace the principal may read; with `as_of`, the workspace as it stood then,
/// folded from its events (see [`as_of`]).
pub async fn get(
    state: &AppState,
    principal: &Principal,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<Value> {
    let auth = member_auth(state, principal, id, READ).await?;
    match at {
        None => workspace_item(state, id, &auth.principal).await,
        Some(at) => as_of::present(as_of::fold::<Workspace>(state, id, at).await?, None)
            .ok_or_else(|| Error::not_found("Workspace")),
    }
}

/// Creates a workspace; the user creating it becomes its owner.
pub async fn create(state: &AppState, principal: &Principal, new: NewWorkspace) -> Result<Value> {
    let user_id = principal
        .user_id()
        .ok_or_else(|| Error::AccessDenied("Only users can create workspaces.".into()))?;
    let id = create_owned(
        state,
        &principal.metadata(),
        user_id,
        &new.name,
        new.slug.as_deref(),
        new.tier,
        "name",
    )
    .await?;
    workspace_item(state, &id, principal).await
}

/// Renames a workspace, changes its settings or (owners) its tier.
pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: &str,
    change: WorkspaceChange,
    expected: Option<i64>,
) -> Result<Value> {
    let auth = member_auth(state, principal, id, WRITE).await?;
    let command = WorkspaceCommand::UpdateWorkspace {
        name: change.name,
        settings: change.settings,
        tier: change.tier,
        by: auth.acting_role(),
    };
    // The key table too: a tier change is in force here when this returns.
    state
        .commands
        .execute_expecting::<Workspace>(
            id,
            command,
            &auth.metadata(),
            &[identity::NAME, key_table::NAME],
            expected,
        )
        .await?;
    workspace_item(state, id, &auth.principal).await
}

/// Deletes a workspace (`workspaces:delete`, owners): its keys and every session made
/// from them stop, on every node.
pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: &str,
    expected: Option<i64>,
) -> Result<()> {
    let auth = member_auth(state, principal, id, DELETE).await?;
    state
        .commands
        .execute_expecting::<Workspace>(
            id,
            WorkspaceCommand::DeleteWorkspace,
            &auth.metadata(),
            // The key table too: the workspace's keys are dead here when this returns.
            &[identity::NAME, key_table::NAME],
            expected,
        )
        .await?;
    claims::release_all(&state.pool, claims::WORKSPACE_SLUG, id).await
}

/// A page of a workspace's members.
pub async fn members(
    state: &AppState,
    principal: &Principal,
    id: &str,
    request: &ListRequest,
) -> Result<Page> {
    member_auth(state, principal, id, READ).await?;
    Ok(list::fetch(
        &state.pool,
        &identity::MEMBERS,
        request,
        &[("m.workspace_id", id.to_string())],
    )
    .await?)
}

/// Adds a user who has signed up, by email, with a role.
pub async fn add_member(
    state: &AppState,
    principal: &Principal,
    id: &str,
    email: &str,
    role: Role,
) -> Result<Value> {
    let auth = member_auth(state, principal, id, WRITE).await?;
    let email = validate::normalize_email(email);
    validate::email(&email).map_err(|m| Error::invalid("email", m))?;
    let user_id = accounts::user_id_by_email(state, &email)
        .await?
        .ok_or_else(|| Error::invalid("email", "No user with this email address exists."))?;
    let (turn_state, workspace_id) = (state.clone(), id.to_string());
    super::limits::create_within(state, id, Feature::Members, move || async move {
        let state = turn_state;
        let command = WorkspaceCommand::AddMember {
            user_id: user_id.clone(),
            role,
            by: auth.acting_role(),
        };
        state
            .commands
            .execute::<Workspace>(&workspace_id, command, &auth.metadata(), &[identity::NAME])
            .await?;
        member_item(&state, &workspace_id, &user_id).await
    })
    .await
}

/// Changes a member's role (only owners touch the owner role).
pub async fn change_member(
    state: &AppState,
    principal: &Principal,
    id: &str,
    user_id: &str,
    role: Role,
) -> Result<Value> {
    let auth = member_auth(state, principal, id, WRITE).await?;
    let command = WorkspaceCommand::ChangeMemberRole {
        user_id: user_id.to_string(),
        role,
        by: auth.acting_role(),
    };
    state
        .commands
        .execute::<Workspace>(id, command, &auth.metadata(), &[identity::NAME])
        .await?;
    member_item(state, id, user_id).await
}

/// Removes a member (a workspace keeps at least one owner).
pub async fn remove_member(
    state: &AppState,
    principal: &Principal,
    id: &str,
    user_id: &str,
) -> Result<()> {
    let auth = member_auth(state, principal, id, WRITE).await?;
    let command = WorkspaceCommand::RemoveMember {
        user_id: user_id.to_string(),
        by: auth.acting_role(),
    };
    state
        .commands
        .execute::<Workspace>(id, command, &auth.metadata(), &[identity::NAME])
        .await?;
    Ok(())
}
