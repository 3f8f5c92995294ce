//! What agents can read and the prompts they can start from, beside the tools
//! ([`super::tools`]): one catalog for the MCP server and its REST facade.
//!
//! Resources: `pulsar://workspace` (the workspace and its standing) and each record,
//! `pulsar://<collection>/{id}` (documents as Markdown, the rest as JSON). A caller sees
//! and reads only what its scopes allow.

use pulsar_domain::record::RecordKind;
use pulsar_domain::scopes::{Action, Permission, Resource as ScopeResource};
use pulsar_projections::list::ListRequest;
use serde_json::{json, Value};

use super::records::{self, Companies, Contacts, Deals, Documents, Projects, Resource, Tasks};
use super::{AppState, Auth, Error, Result};

/// The workspace resource.
pub const WORKSPACE_URI: &str = "pulsar://workspace";
/// Items per `resources/list` page.
pub const PAGE: u32 = 50;

const WORKSPACE_READ: Permission = Permission(ScopeResource::Workspaces, Action::Read);

/// One readable resource's contents.
#[derive(Debug, Clone, PartialEq)]
pub struct Contents {
    pub uri: String,
    pub mime_type: &'static str,
    pub text: String,
}

impl Contents {
    pub fn to_json(&self) -> Value {
        json!({"uri": self.uri, "mimeType": self.mime_type, "text": self.text})
    }
}

/// Why a read failed.
#[derive(Debug)]
pub enum ReadError {
    /// No such resource (or not in this workspace).
    NotFound(String),
    /// The caller may not read it.
    Denied(String),
    Failed(Error),
}

impl From<Error> for ReadError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(message) => ReadError::NotFound(message),
            Error::AccessDenied(message) => ReadError::Denied(message),
            other => ReadError::Failed(other),
        }
    }
}

/// The templates: one per collection.
pub fn templates(auth: &Auth) -> Vec<Value> {
    fn template<R: Resource>(auth: &Auth) -> Option<Value> {
        auth.scopes
            .allows(Permission(R::SCOPE, Action::Read))
            .then(|| {
                let noun = <R::Kind as RecordKind>::NOUN;
                json!({
                    "uriTemplate": format!("pulsar://{}/{{id}}", R::NAME),
                    "name": noun,
                    "title": format!("A {noun}"),
                    "description": format!("One {noun} of the workspace by id."),
                    "mimeType": mime::<R>(),
                })
            })
    }
    [
        template::<Documents>(auth),
        template::<Projects>(auth),
        template::<Tasks>(auth),
        template::<Contacts>(auth),
        template::<Companies>(auth),
        template::<Deals>(auth),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn mime<R: Resource>() -> &'static str {
    if R::NAME == Documents::NAME {
        "text/markdown"
    } else {
        "application/json"
    }
}

/// A page of resources: the workspace first, then the documents, `PAGE` at a time;
/// `page` is 1-based. Returns the resources and whether another page follows.
pub async fn list(state: &AppState, auth: &Auth, page: u32) -> Result<(Vec<Value>, bool)> {
    let mut out = Vec::new();
    if page == 1 && auth.scopes.allows(WORKSPACE_READ) {
        out.push(json!({
            "uri": WORKSPACE_URI,
            "name": "workspace",
            "title": "This workspace",
            "description": "The workspace, its tier and what it uses of its limits.",
            "mimeType": "application/json",
        }));
    }
    if !auth
        .scopes
        .allows(Permission(Documents::SCOPE, Action::Read))
    {
        return Ok((out, false));
    }
    let pairs = [
        ("page".to_string(), page.to_string()),
        ("per_page".to_string(), PAGE.to_string()),
        ("sort".to_string(), "-updated_at".to_string()),
    ];
    let request = ListRequest::parse(Documents::SPEC, &pairs, &[]).map_err(Error::BadRequest)?;
    let documents = records::list::<Documents>(state, auth, &request).await?;
    let more = documents.page < documents.last_page();
    out.extend(documents.items.iter().map(|d| {
        json!({
            "uri": format!("pulsar://documents/{}", d["id"].as_str().unwrap_or_default()),
            "name": d["title"],
            "title": d["title"],
            "mimeType": "text/markdown",
        })
    }));
    Ok((out, more))
}

/// Reads `uri`.
pub async fn read(
    state: &AppState,
    auth: &Auth,
    uri: &str,
) -> std::result::Result<Contents, ReadError> {
    if uri == WORKSPACE_URI {
        if !auth.scopes.allows(WORKSPACE_READ) {
            return Err(ReadError::Denied(format!(
                "This credential lacks the `{WORKSPACE_READ}` scope."
            )));
        }
        let workspace =
            super::workspaces::get(state, &auth.principal, &auth.workspace_id, None).await?;
        let standing = if auth
            .scopes
            .allows(Permission(ScopeResource::Entitlements, Action::Read))
        {
            super::entitlements::summary(state, auth).await?["entitlements"].clone()
        } else {
            Value::Null
        };
        let text = json!({"workspace": workspace, "entitlements": standing}).to_string();
        return Ok(Contents {
            uri: uri.to_string(),
            mime_type: "application/json",
            text,
        });
    }
    let not_found = || ReadError::NotFound(format!("No resource {uri}."));
    let (collection, id) = uri
        .strip_prefix("pulsar://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(not_found)?;
    match collection {
        c if c == Documents::NAME => read_item::<Documents>(state, auth, uri, id).await,
        c if c == Projects::NAME => read_item::<Projects>(state, auth, uri, id).await,
        c if c == Tasks::NAME => read_item::<Tasks>(state, auth, uri, id).await,
        c if c == Contacts::NAME => read_item::<Contacts>(state, auth, uri, id).await,
        c if c == Companies::NAME => read_item::<Companies>(state, auth, uri, id).await,
        c if c == Deals::NAME => read_item::<Deals>(state, auth, uri, id).await,
        _ => Err(not_found()),
    }
}

async fn read_item<R: Resource>(
    state: &AppState,
    auth: &Auth,
    uri: &str,
    id: &str,
) -> std::result::Result<Contents, ReadError> {
    if !pulsar_domain::ids::is_id(<R::Kind as RecordKind>::ID_PREFIX, id) {
        return Err(ReadError::NotFound(format!("No resource {uri}.")));
    }
    let request = ListRequest::item(R::SPEC, &[], &[]).map_err(Error::BadRequest)?;
    let item = records::get::<R>(state, auth, id, &request, None).await?;
    let text = if R::NAME == Documents::NAME {
        format!(
            "# {}\n\n{}",
            item["title"].as_str().unwrap_or_default(),
            item["body"].as_str().unwrap_or_default()
        )
    } else {
        item.to_string()
    };
    Ok(Contents {
        uri: uri.to_string(),
        mime_type: mime::<R>(),
        text,
    })
}

// Prompts ----------------------------------------------------------------------------------

/// One prompt's description, filtered by the caller's scopes.
pub fn prompts(auth: &Auth) -> Vec<Value> {
    let mut out = Vec::new();
    if auth
        .scopes
        .allows(Permission(Projects::SCOPE, Action::Read))
    {
        out.push(json!({
            "name": "summarize_project",
            "title": "Summarize a project",
            "description": "A status summary of one project from its details and its tasks.",
            "arguments": [{"name": "project_id", "description": "The project's id (proj_…)", "required": true}],
        }));
    }
    if auth
        .scopes
        .allows(Permission(ScopeResource::Seo, Action::Read))
    {
        out.push(json!({
            "name": "triage_seo_issues",
            "title": "Triage SEO issues",
            "description": "A fix plan for the workspace's current SEO issues, most severe first.",
            "arguments": [],
        }));
    }
    out
}

/// Why a prompt could not be made.
#[derive(Debug)]
pub enum PromptError {
    /// Unknown prompt, or a missing or bad argument.
    Invalid(String),
    Failed(Error),
}

impl From<Error> for PromptError {
    fn from(error: Error) -> Self {
        match error {
            Error::NotFound(message)
            | Error::AccessDenied(message)
            | Error::BadRequest(message) => PromptError::Invalid(message),
            other => PromptError::Failed(other),
        }
    }
}

/// The prompt `name` with `arguments` (strings): `{description, messages}`.
pub async fn prompt(
    state: &AppState,
    auth: &Auth,
    name: &str,
    arguments: &serde_json::Map<String, Value>,
) -> std::result::Result<Value, PromptError> {
    let visible = prompts(auth).iter().any(|p| p["name"] == name);
    if !visible {
        return Err(PromptError::Invalid(format!("Unknown prompt: {name}")));
    }
    let text = |name: &str| -> std::result::Result<String, PromptError> {
        match arguments.get(name) {
            Some(Value::String(value)) if !value.trim().is_empty() => Ok(value.trim().to_string()),
            _ => Err(PromptError::Invalid(format!(
                "The argument `{name}` is required."
            ))),
        }
    };
    let message = |text: String| json!({"role": "user", "content": {"type": "text", "text": text}});
    match name {
        "summarize_project" => {
            let project_id = text("project_id")?;
            if !pulsar_domain::ids::is_id(
                <<Projects as Resource>::Kind as RecordKind>::ID_PREFIX,
                &project_id,
            ) {
                return Err(PromptError::Invalid("No project has this id.".into()));
            }
            let request = ListRequest::item(Projects::SPEC, &[], &[]).map_err(Error::BadRequest)?;
            let project =
                records::get::<Projects>(state, auth, &project_id, &request, None).await?;
            let tasks = if auth.scopes.allows(Permission(Tasks::SCOPE, Action::Read)) {
                let pairs = [
                    ("project_id".to_string(), project_id.clone()),
                    ("per_page".to_string(), "100".to_string()),
                ];
                let request =
                    ListRequest::parse(Tasks::SPEC, &pairs, &[]).map_err(Error::BadRequest)?;
                Value::Array(records::list::<Tasks>(state, auth, &request).await?.items)
            } else {
                Value::Null
            };
            Ok(json!({
                "description": format!("Summarize project {}", project["name"].as_str().unwrap_or_default()),
                "messages": [message(format!(
                    "Summarize the status of this project for its team: what is done, what is in progress, \
                     what is blocked or overdue, and what should happen next. Be brief and concrete.\n\n\
                     Project:\n{project}\n\nTasks (first 100{}):\n{tasks}",
                    if tasks.is_null() { "; not visible with this credential's scopes" } else { "" }
                ))],
            }))
        }
        "triage_seo_issues" => {
            let pairs = [("per_page".to_string(), "100".to_string())];
            let request = ListRequest::parse(&pulsar_projections::seo::ISSUES, &pairs, &[])
                .map_err(Error::BadRequest)?;
            let issues =
                super::seo::issues(state, &auth.principal, &auth.workspace_id, &request).await?;
            Ok(json!({
                "description": "Triage the workspace's SEO issues",
                "messages": [message(format!(
                    "Here are the current SEO issues of our site (each URL's latest audit, most severe first, \
                     {} in all). Group them by cause, order the fixes by impact, and say which page each fix touches.\n\n{}",
                    issues.total,
                    Value::Array(issues.items)
                ))],
            }))
        }
        other => Err(PromptError::Invalid(format!("Unknown prompt: {other}"))),
    }
}
