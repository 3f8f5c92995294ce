//! Workspace data use cases, the same for every collection (projects, tasks, contacts,
//! companies, deals, documents):
//! - scope checks (`<resource>:read|write|delete`), tenant scoping of every read;
//! - tier limits on creation (403 `feature_limit_reached`), from the live counts the
//!   projections keep;
//! - reference lookups: each referenced id is looked up in this workspace, and the
//!   aggregate decides what a missing one means (422 on the field);
//! - `If-Match` versions on changes and deletions;
//! - read-your-writes: a write returns after its read model has it.
//!
//! Each collection is a [`Resource`]: its record kind, scope, list and the references
//! its fields hold. Adapters name the collection by type (`records::list::<Projects>`).

use chrono::{DateTime, Utc};
use pulsar_domain::entitlements::Feature;
use pulsar_domain::ids;
use pulsar_domain::record::{LiveReferences, Record, RecordCommand, RecordKind};
use pulsar_domain::scopes::{self, Action, Permission};
use pulsar_domain::workspace::Tier;
use pulsar_domain::workspace_data::{
    CompanyKind, ContactKind, DealKind, DocumentKind, ProjectKind, TaskKind,
};
use pulsar_projections::list::{self, ListRequest, ListSpec, Page};
use pulsar_projections::workspace_data::{self as data, Reference};
use serde_json::{Map, Value};

use crate::application::{as_of, AppState};
use crate::application::{Auth, Error, Result};

/// One collection of workspace data.
pub trait Resource: Send + Sync + 'static {
    type Kind: RecordKind;
    /// How answers name one item, e.g. `Project`.
    const LABEL: &'static str;
    /// The read model (table and subscriber) and the tier-limit feature, e.g. `projects`.
    const NAME: &'static str;
    /// The tier-limited feature it counts toward.
    const FEATURE: Feature;
    /// The scope resource guarding it.
    const SCOPE: scopes::Resource;
    /// The list, filters, includes and item shape (its read model's).
    const SPEC: &'static ListSpec;
    /// The table alias `SPEC` uses, e.g. `p`, for the id and tenant conditions.
    const ALIAS_ID: &'static str;
    const ALIAS_WORKSPACE: &'static str;
    /// For each reference field, where its id must be live.
    const REFERENCES: &'static [(&'static str, Target)];
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
    prefix: ProjectKind::ID_PREFIX,
};
pub const COMPANY: Target = Target {
    table: "companies",
    column: "id",
    prefix: CompanyKind::ID_PREFIX,
};
pub const CONTACT: Target = Target {
    table: "contacts",
    column: "id",
    prefix: ContactKind::ID_PREFIX,
};

macro_rules! resource {
    ($(#[$meta:meta])* $name:ident, $kind:ty, $label:literal, $module:ident, $feature:ident, $scope:ident,
     $alias:literal, [$($field:literal => $target:expr),*]) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name;

        impl Resource for $name {
            type Kind = $kind;
            const LABEL: &'static str = $label;
            const NAME: &'static str = data::$module::NAME;
            const FEATURE: Feature = Feature::$feature;
            const SCOPE: scopes::Resource = scopes::Resource::$scope;
            const SPEC: &'static ListSpec = &data::$module::LIST;
            const ALIAS_ID: &'static str = concat!($alias, ".id");
            const ALIAS_WORKSPACE: &'static str = concat!($alias, ".workspace_id");
            const REFERENCES: &'static [(&'static str, Target)] = &[$(($field, $target)),*];
        }
    };
}

resource!(/// `/projects` (`projects:*`).
    Projects, ProjectKind, "Project", projects, Projects, Projects, "p", ["owner_id" => MEMBER]);
resource!(/// `/tasks` (`tasks:*`).
    Tasks, TaskKind, "Task", tasks, Tasks, Tasks, "t", ["project_id" => PROJECT, "assignee_id" => MEMBER]);
resource!(/// `/contacts` (`crm:*`).
    Contacts, ContactKind, "Contact", contacts, Contacts, Crm, "c", ["company_id" => COMPANY]);
resource!(/// `/companies` (`crm:*`).
    Companies, CompanyKind, "Company", companies, Companies, Crm, "co", []);
resource!(/// `/deals` (`crm:*`).
    Deals, DealKind, "Deal", deals, Deals, Crm, "d", ["company_id" => COMPANY, "contact_id" => CONTACT]);
resource!(/// `/documents` (`documents:*`).
    Documents, DocumentKind, "Document", documents, Documents, Documents, "doc", []);

fn permission<R: Resource>(action: Action) -> Permission {
    Permission(R::SCOPE, action)
}

fn not_found<R: Resource>() -> Error {
    Error::not_found(R::LABEL)
}

fn scope<R: Resource>(auth: &Auth, id: &str) -> [(&'static str, String); 2] {
    [
        (R::ALIAS_ID, id.to_string()),
        (R::ALIAS_WORKSPACE, auth.workspace_id.clone()),
    ]
}

/// The item as a write just left it ([`as_of::written`]).
async fn written<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    consistent: bool,
) -> Result<Value> {
    let read_model =
        async { Ok(list::fetch_one(&state.pool, R::SPEC, &scope::<R>(auth, id)).await?) };
    as_of::written::<Record<R::Kind>, _>(state, &auth.workspace_id, id, consistent, read_model)
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
    let checked: Vec<(String, String, Target)> = candidates
        .into_iter()
        .filter_map(|(field, id)| {
            let (_, target) = R::REFERENCES.iter().find(|(f, _)| *f == field)?;
            // Not an id at all: the aggregate refuses it by its shape.
            ids::is_id(target.prefix, &id).then_some((field, id, *target))
        })
        .collect();
    let references: Vec<Reference<'_>> = checked
        .iter()
        .map(|(_, id, target)| Reference {
            table: target.table,
            column: target.column,
            id,
        })
        .collect();
    let found = data::precheck(&state.pool, workspace_id, R::NAME, &references)
        .await?
        .ok_or_else(|| Error::not_found("Workspace"))?;
    let live = checked
        .into_iter()
        .zip(found.live)
        .filter(|(_, live)| *live)
        .map(|((field, id, _), _)| (field, id))
        .collect();
    Ok(Precheck {
        tier: Tier::parse(&found.tier).unwrap_or_default(),
        count: found.count,
        live,
    })
}

/// 403 `feature_limit_reached` when the workspace holds as many as its tier allows (the
/// projection's count, taken in the creation's turn: see [`create`]).
fn check_limit<R: Resource>(state: &AppState, precheck: &Precheck) -> Result<()> {
    match precheck.tier.limit(R::FEATURE) {
        Some(limit) if precheck.count >= limit as i64 => Err(Error::FeatureLimitReached {
            feature: R::FEATURE.as_str(),
            limit: limit as i64,
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
) -> Result<bool> {
    state
        .commands
        .execute_expecting::<Record<R::Kind>>(id, command, &auth.metadata(), &[R::NAME], expected)
        .await
        .map(|committed| committed.consistent)
        .map_err(|e| match e {
            Error::NotFound(_) => not_found::<R>(),
            other => other,
        })
}

/// A page of the workspace's items. Totals are reused while the read model has not
/// moved (`list::fetch_counted`).
pub async fn list<R: Resource>(
    state: &AppState,
    auth: &Auth,
    request: &ListRequest,
) -> Result<Page> {
    auth.require(permission::<R>(Action::Read))?;
    let scope = [(R::ALIAS_WORKSPACE, auth.workspace_id.clone())];
    Ok(match state.subscriptions.position(R::NAME) {
        Some(at) => {
            list::fetch_counted(&state.pool, R::SPEC, request, &scope, &state.counts, at).await?
        }
        None => list::fetch(&state.pool, R::SPEC, request, &scope).await?,
    })
}

/// One item, shaped by the request's `fields` and `include`; with `as_of`, the item as
/// it stood then, folded from its events (see [`as_of`]), shaped by `fields`.
pub async fn get<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    request: &ListRequest,
    at: Option<DateTime<Utc>>,
) -> Result<Value> {
    auth.require(permission::<R>(Action::Read))?;
    let Some(at) = at else {
        return list::fetch_item(&state.pool, R::SPEC, request, &scope::<R>(auth, id))
            .await?
            .ok_or_else(not_found::<R>);
    };
    if !request.include.is_empty() {
        return Err(Error::BadRequest(
            "`include` shows relations as they are now; it cannot be combined with `as_of`.".into(),
        ));
    }
    let mut item = as_of::item::<Record<R::Kind>>(state, &auth.workspace_id, id, at)
        .await?
        .ok_or_else(not_found::<R>)?;
    request.select(&mut item);
    Ok(item)
}

/// Creates an item; returns it as lists show it.
///
/// When the workspace's tier limits this feature, the count and the creation take their
/// turn per (workspace, feature) across every node ([`super::limits`]), so concurrent
/// creations cannot overshoot the limit. The turn runs in a task of its own: a client
/// that goes away cannot cut it short.
pub async fn create<R: Resource>(
    state: &AppState,
    auth: &Auth,
    fields: <R::Kind as RecordKind>::Fields,
) -> Result<Value> {
    auth.require(permission::<R>(Action::Write))?;
    let candidates: Vec<(String, String)> = R::Kind::references(&fields)
        .into_iter()
        .map(|(field, id)| (field.to_string(), id))
        .collect();
    let first = precheck::<R>(state, &auth.workspace_id, candidates.clone()).await?;
    if first.tier.limit(R::FEATURE).is_none() {
        return create_counted::<R>(state, auth, fields, first).await;
    }
    let tier = first.tier;
    let (turn_state, turn_auth) = (state.clone(), auth.clone());
    let created = tokio::spawn(async move {
        let (state, auth) = (turn_state, turn_auth);
        let hold = state
            .limits
            .hold(&state.pool, &auth.workspace_id, R::FEATURE)
            .await?;
        let created = async {
            let counted = precheck::<R>(&state, &auth.workspace_id, candidates).await?;
            create_counted::<R>(&state, &auth, fields, counted).await
        }
        .await;
        hold.release().await;
        created
    })
    .await
    .map_err(|error| Error::Internal(format!("a creation's task failed: {error}")))?;
    if created.is_ok() {
        super::alerts::spawn_observe(state, &auth.workspace_id, R::FEATURE);
        if tier.limit(Feature::Storage).is_some() && R::FEATURE == Feature::Documents {
            super::alerts::spawn_observe(state, &auth.workspace_id, Feature::Storage);
        }
    }
    created
}

/// Creates an item once `precheck` (its count and references) allows it.
async fn create_counted<R: Resource>(
    state: &AppState,
    auth: &Auth,
    fields: <R::Kind as RecordKind>::Fields,
    precheck: Precheck,
) -> Result<Value> {
    check_limit::<R>(state, &precheck)?;
    let id = ids::new_id(R::Kind::ID_PREFIX);
    let command = RecordCommand::Create {
        workspace_id: auth.workspace_id.clone(),
        fields,
        created_by: auth.principal.actor(),
        live: precheck.live,
    };
    let committed = state
        .commands
        .create::<Record<R::Kind>>(&id, command, &auth.metadata(), &[R::NAME])
        .await?;
    written::<R>(state, auth, &id, committed.consistent).await
}

/// Changes some fields: a JSON object merged onto the current ones (`null` clears an
/// optional field), only if the item is still at `expected` when given.
pub async fn update<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    patch: Map<String, Value>,
    expected: Option<i64>,
) -> Result<Value> {
    auth.require(permission::<R>(Action::Write))?;
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
    let consistent = change::<R>(state, auth, id, command, expected).await?;
    written::<R>(state, auth, id, consistent).await
}

/// Deletes an item, only if it is still at `expected` when given.
pub async fn delete<R: Resource>(
    state: &AppState,
    auth: &Auth,
    id: &str,
    expected: Option<i64>,
) -> Result<()> {
    auth.require(permission::<R>(Action::Delete))?;
    let command = RecordCommand::Delete {
        workspace_id: auth.workspace_id.clone(),
    };
    change::<R>(state, auth, id, command, expected)
        .await
        .map(|_| ())
}

// What items look like ---------------------------------------------------------------

/// What every item carries besides its fields.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
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
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RecordOut<F: utoipa::ToSchema> {
    #[serde(flatten)]
    pub fields: F,
    #[serde(flatten)]
    pub meta: RecordMetaOut,
}
