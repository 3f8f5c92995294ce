//! The MCP REST facade's use cases (`/mcp/...`): the MCP servers this deployment offers,
//! their tools, calling a tool and reading a resource, over the same registry and
//! catalog the MCP server at `/api/mcp` uses ([`super::tools`], [`super::resources`]).
//!
//! Authority: `mcp:read` to look, to read resources and to call read-only tools,
//! `mcp:write` to call the others, and each tool's or resource's own scopes on top, so a
//! key gets nothing here it could not get through REST or MCP. Failures are the REST
//! errors of the use case behind the tool (422, 403 `feature_limit_reached`, 404, ...).

use pulsar_domain::scopes::{Action, Permission, Resource as ScopeResource};
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::resources::{self, ReadError};
use super::tools::{Registry, Tool};
use super::{AppState, Auth, Error, Result};

/// The one server a deployment offers, by id.
pub const SERVER_ID: &str = "pulsar";
/// Where it is served.
pub const ENDPOINT: &str = "/api/mcp";
/// The revisions served, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2026-07-28", "2025-11-25", "2025-06-18"];
/// What the server tells agents about itself.
pub const INSTRUCTIONS: &str = "Pulsar workspace data: projects, tasks, contacts, companies, deals and documents, \
    with the same API key scopes and tier limits as the REST API. Tools are named <collection>_<verb>.";

const READ: Permission = Permission(ScopeResource::Mcp, Action::Read);
const WRITE: Permission = Permission(ScopeResource::Mcp, Action::Write);

/// An MCP server.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Server {
    #[schema(example = "pulsar")]
    pub id: String,
    pub title: String,
    pub description: String,
    pub version: String,
    /// Always `streamable-http`, stateless: any node answers any request.
    #[schema(example = "streamable-http")]
    pub transport: String,
    /// The endpoint's path on this host.
    #[schema(example = "/api/mcp")]
    pub url: String,
    /// Newest first.
    pub protocol_versions: Vec<String>,
    /// `tools`, `resources`, `prompts`.
    pub capabilities: Vec<String>,
    /// How many tools the caller's scopes show.
    pub tool_count: usize,
}

/// A tool as the facade lists it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolOut {
    #[schema(example = "projects_list")]
    pub name: String,
    pub title: String,
    pub description: String,
    /// Every scope it needs, beside `mcp:read` (read-only tools) or `mcp:write`.
    pub scopes: Vec<String>,
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    /// JSON Schema of the arguments.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// JSON Schema of `structured_content`.
    #[schema(value_type = Object)]
    pub output_schema: Value,
}

impl From<&Tool> for ToolOut {
    fn from(tool: &Tool) -> Self {
        Self {
            name: tool.name.clone(),
            title: tool.title.clone(),
            description: tool.description.clone(),
            scopes: tool.permissions.iter().map(|p| p.to_string()).collect(),
            read_only: tool.hints.read_only,
            destructive: tool.hints.destructive,
            idempotent: tool.hints.idempotent,
            input_schema: tool.input_schema.clone(),
            output_schema: tool.output_schema.clone(),
        }
    }
}

/// A tool call's result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CallOut {
    pub server: String,
    pub tool: String,
    /// Matches the tool's `output_schema`.
    #[schema(value_type = Object)]
    pub structured_content: Value,
}

/// A resource's contents.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResourceOut {
    #[schema(example = "pulsar://documents/doc_01J9Z7W5Q8N4X2M3K6B1C0D9EF")]
    pub uri: String,
    #[schema(example = "text/markdown")]
    pub mime_type: String,
    pub text: String,
}

fn describe(auth: &Auth) -> Server {
    Server {
        id: SERVER_ID.into(),
        title: "Pulsar".into(),
        description: INSTRUCTIONS.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        transport: "streamable-http".into(),
        url: ENDPOINT.into(),
        protocol_versions: PROTOCOL_VERSIONS.iter().map(|v| v.to_string()).collect(),
        capabilities: vec!["tools".into(), "resources".into(), "prompts".into()],
        tool_count: Registry::get().visible(auth).count(),
    }
}

fn known(id: &str) -> Result<()> {
    if id == SERVER_ID {
        Ok(())
    } else {
        Err(Error::NotFound(format!(
            "No MCP server `{id}`; this deployment serves `{SERVER_ID}`."
        )))
    }
}

/// `GET /mcp/servers`.
pub fn servers(auth: &Auth) -> Result<Vec<Server>> {
    auth.require(READ)?;
    Ok(vec![describe(auth)])
}

/// `GET /mcp/servers/{id}`.
pub fn server(auth: &Auth, id: &str) -> Result<Server> {
    auth.require(READ)?;
    known(id)?;
    Ok(describe(auth))
}

/// `GET /mcp/servers/{id}/tools`: the tools the caller's scopes show, as `tools/list`.
pub fn tools(auth: &Auth, id: &str) -> Result<Vec<ToolOut>> {
    auth.require(READ)?;
    known(id)?;
    Ok(Registry::get().visible(auth).map(ToolOut::from).collect())
}

/// `POST /mcp/tools/call`: the tool by name or dotted alias.
pub async fn call(
    state: &AppState,
    auth: &Auth,
    server: &str,
    name: &str,
    arguments: Map<String, Value>,
) -> Result<CallOut> {
    auth.require(READ)?;
    known(server)?;
    let registry = Registry::get();
    let tool = registry
        .find(name)
        .ok_or_else(|| Error::NotFound(format!("No tool `{name}` on `{server}`.")))?;
    if !tool.hints.read_only {
        auth.require(WRITE)?;
    }
    let structured_content = registry.run(state, auth, tool, arguments).await?;
    Ok(CallOut {
        server: SERVER_ID.into(),
        tool: tool.name.clone(),
        structured_content,
    })
}

/// `GET /mcp/resources/{uri}`.
pub async fn read_resource(state: &AppState, auth: &Auth, uri: &str) -> Result<ResourceOut> {
    auth.require(READ)?;
    match resources::read(state, auth, uri).await {
        Ok(contents) => Ok(ResourceOut {
            uri: contents.uri,
            mime_type: contents.mime_type.into(),
            text: contents.text,
        }),
        Err(ReadError::NotFound(message)) => Err(Error::NotFound(message)),
        Err(ReadError::Denied(message)) => Err(Error::AccessDenied(message)),
        Err(ReadError::Failed(error)) => Err(error),
    }
}
