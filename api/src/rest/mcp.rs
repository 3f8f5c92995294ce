//! `/mcp/...`: the REST facade of the MCP server, for integrations that want its tools
//! and resources without speaking JSON-RPC. Only translation: the use cases, and the
//! scope checks, are [`crate::application::mcp_servers`]'s.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{DataOut, ErrorOut};
use crate::application::mcp_servers::{self, CallOut, ResourceOut, Server, ToolOut};
use crate::application::{AppState, Auth, Error, Result};
use crate::http::extract::Json;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_servers))
        .routes(routes!(get_server))
        .routes(routes!(list_tools))
        .routes(routes!(call_tool))
        .routes(routes!(read_resource))
}

/// `{"data": [...]}` of `GET /mcp/servers`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServersOut {
    pub data: Vec<Server>,
}

/// `{"data": [...]}` of `GET /mcp/servers/{id}/tools`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolsOut {
    pub data: Vec<ToolOut>,
}

/// `POST /mcp/tools/call`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallIn {
    /// A server id from `GET /mcp/servers` (`pulsar`).
    pub server: String,
    /// A tool name (`projects_list`) or its dotted alias (`projects.list`).
    pub tool: String,
    /// The tool's arguments, as its `input_schema` describes them.
    #[schema(value_type = Option<Object>)]
    pub arguments: Option<Map<String, Value>>,
}

/// The MCP servers this deployment offers (`mcp:read`).
#[utoipa::path(get, path = "/mcp/servers", tag = "mcp",
    responses((status = 200, body = ServersOut), (status = 403, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_servers(auth: Auth) -> Result<Response> {
    let data = mcp_servers::servers(&auth)?;
    Ok(axum::Json(json!({ "data": data })).into_response())
}

/// One MCP server (`mcp:read`).
#[utoipa::path(get, path = "/mcp/servers/{id}", tag = "mcp", params(("id" = String, Path)),
    responses((status = 200, body = DataOut<Server>), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn get_server(auth: Auth, Path(id): Path<String>) -> Result<Response> {
    let server = mcp_servers::server(&auth, &id)?;
    Ok(axum::Json(json!({ "data": server })).into_response())
}

/// The server's tools the caller's scopes show, as `tools/list` lists them
/// (`mcp:read`).
#[utoipa::path(get, path = "/mcp/servers/{id}/tools", tag = "mcp", params(("id" = String, Path)),
    responses((status = 200, body = ToolsOut), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_tools(auth: Auth, Path(id): Path<String>) -> Result<Response> {
    let data = mcp_servers::tools(&auth, &id)?;
    Ok(axum::Json(json!({ "data": data })).into_response())
}

/// Call a tool: `mcp:read` for read-only tools, `mcp:write` for the others, and the
/// tool's own scopes. The use case's refusals are its REST errors (422, 403
/// `feature_limit_reached`, 404).
#[utoipa::path(post, path = "/mcp/tools/call", tag = "mcp", request_body = CallIn,
    responses((status = 200, body = DataOut<CallOut>), (status = 400, body = ErrorOut),
        (status = 403, body = ErrorOut), (status = 404, body = ErrorOut), (status = 422, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn call_tool(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<CallIn>,
) -> Result<Response> {
    let arguments = input.arguments.unwrap_or_default();
    let out = mcp_servers::call(&state, &auth, &input.server, &input.tool, arguments).await?;
    Ok(axum::Json(json!({ "data": out })).into_response())
}

/// Read a resource by its URI, percent-encoded as one path segment
/// (`pulsar%3A%2F%2Fdocuments%2Fdoc_…`) (`mcp:read` and the resource's own scope).
#[utoipa::path(get, path = "/mcp/resources/{uri}", tag = "mcp",
    params(("uri" = String, Path, description = "`pulsar://workspace` or `pulsar://<collection>/{id}`, percent-encoded")),
    responses((status = 200, body = DataOut<ResourceOut>), (status = 403, body = ErrorOut), (status = 404, body = ErrorOut)),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn read_resource(
    State(state): State<AppState>,
    auth: Auth,
    Path(uri): Path<String>,
) -> Result<Response> {
    let resource = mcp_servers::read_resource(&state, &auth, &resource_uri(&uri)?).await?;
    Ok(axum::Json(json!({ "data": resource })).into_response())
}

/// The URI a path names: proxies and clients collapse `//` in paths, so
/// `pulsar:/documents/…` is taken as `pulsar://documents/…`.
fn resource_uri(raw: &str) -> Result<String> {
    let raw = raw.trim_start_matches('/');
    let rest = raw.strip_prefix("pulsar:").ok_or_else(|| {
        Error::NotFound(format!(
            "No resource {raw}; resource URIs start with pulsar://."
        ))
    })?;
    Ok(format!("pulsar://{}", rest.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::resource_uri;

    #[test]
    fn resource_uris_survive_collapsed_slashes() {
        for raw in [
            "pulsar://documents/doc_1",
            "pulsar:/documents/doc_1",
            "/pulsar://documents/doc_1",
        ] {
            assert_eq!(
                resource_uri(raw).ok().as_deref(),
                Some("pulsar://documents/doc_1")
            );
        }
        assert_eq!(
            resource_uri("pulsar://workspace").ok().as_deref(),
            Some("pulsar://workspace")
        );
        assert!(resource_uri("https://example.com").is_err());
    }
}
