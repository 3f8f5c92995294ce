//! The MCP server at `POST /api/mcp`: JSON-RPC 2.0 over Streamable HTTP, stateless, so
//! any node answers any request and a restart loses nothing.
//!
//! Two eras are served, per request:
//! - **Handshake** (2025-06-18, 2025-11-25): `initialize` negotiates a version, which
//!   later requests name in `MCP-Protocol-Version` (a missing header is taken as
//!   2025-06-18, an unsupported one is 400). Errors are JSON-RPC errors with HTTP 200:
//!   the official 1.x client drops the whole connection on any HTTP error status.
//! - **2026-07-28**: no handshake; `server/discover`, the version and client capabilities
//!   in each request's `params._meta`, `Mcp-Method` / `Mcp-Name` headers that must match
//!   the body (400, -32020), an unsupported version 400 (-32022), a missing `_meta` field
//!   400 (-32602), an unknown method 404 (-32601). Results carry `resultType`, and
//!   lists and reads `ttlMs: 0` and `cacheScope: "private"` (what a caller sees depends
//!   on its scopes).
//!
//! Around both: a disallowed `Origin` is 403, a missing or bad credential 401 with
//! `WWW-Authenticate: Bearer`, malformed JSON -32700, a batch or malformed request -32600,
//! notifications 202 with no body, `GET` and `DELETE` 405. Authentication, the policy
//! chain, rate limits and metering are the REST ones (the same middleware). This module
//! only translates: tools, resources and prompts are the application's
//! ([`crate::application::tools`], [`crate::application::resources`]).

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::application::mcp_servers;
use crate::application::resources::{self, PromptError, ReadError};
use crate::application::tools::Registry;
use crate::application::{AppState, Auth, Error};
use crate::http::extract::strict;

/// The endpoint's path.
pub const PATH: &str = mcp_servers::ENDPOINT;
/// The handshake revisions, oldest first.
pub const HANDSHAKE_VERSIONS: [&str; 2] = ["2025-06-18", "2025-11-25"];
/// The revision without a handshake.
pub const MODERN_VERSION: &str = "2026-07-28";
/// Every revision served, newest first (`server/discover`'s `supportedVersions`).
pub const SUPPORTED: [&str; 3] = mcp_servers::PROTOCOL_VERSIONS;
/// Tools per `tools/list` page.
const TOOLS_PAGE: usize = 20;

const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const META_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route(PATH, post(handle).get(not_allowed).delete(not_allowed))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::http::authenticate::authenticate,
        ))
}

/// No server-sent stream and no session to end: only POST.
async fn not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, HeaderValue::from_static("POST"))],
        axum::Json(json!({
            "jsonrpc": "2.0",
            "error": {"code": -32600, "message": "This server is stateless: POST JSON-RPC requests to it; there is no stream to GET and no session to DELETE."},
        })),
    )
        .into_response()
}

/// Which rules a request follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Era {
    Handshake(&'static str),
    Modern,
}

/// A JSON-RPC error with the HTTP status it travels with.
#[derive(Debug)]
struct RpcError {
    status: StatusCode,
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            data: None,
        }
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    fn respond(self, id: Option<&Value>) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = self.data {
            error["data"] = data;
        }
        let mut body = json!({"jsonrpc": "2.0", "error": error});
        body["id"] = id.cloned().unwrap_or(Value::Null);
        (self.status, axum::Json(body)).into_response()
    }
}

/// A method's failure, before the era decides its HTTP status.
enum Failure {
    InvalidParams(String),
    NotFound(String, Value),
    MethodNotFound(String),
    Internal(Error),
}

impl Failure {
    fn into_rpc(self, era: Era) -> RpcError {
        let ok = StatusCode::OK;
        match self {
            Failure::InvalidParams(message) => RpcError::new(ok, -32602, message),
            Failure::NotFound(message, data) => {
                let code = if era == Era::Modern { -32602 } else { -32002 };
                RpcError::new(ok, code, message).with_data(data)
            }
            Failure::MethodNotFound(method) => {
                let status = if era == Era::Modern {
                    StatusCode::NOT_FOUND
                } else {
                    ok
                };
                RpcError::new(status, -32601, format!("Method not found: {method}"))
            }
            Failure::Internal(error) => {
                tracing::error!(%error, "an MCP request failed");
                RpcError::new(ok, -32603, "Internal error; the request id is in the logs.")
            }
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        match error {
            Error::BadRequest(message) | Error::AccessDenied(message) => {
                Failure::InvalidParams(message)
            }
            Error::Validation(errors) => Failure::InvalidParams(errors.to_string()),
            other => Failure::Internal(other),
        }
    }
}

/// Whether the request's `Origin` (if any) may call: the server's own, or a configured one.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.trim_end_matches('/');
    if state
        .config
        .mcp_allowed_origins
        .iter()
        .any(|allowed| allowed == origin)
    {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    !host.is_empty()
        && origin
            .split_once("://")
            .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && rest == host)
}

/// A header's value as the client meant it: `=?base64?…?=` decoded.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    let raw = headers.get(name)?.to_str().ok()?;
    if let Some(encoded) = raw
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    Some(raw.to_string())
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if !origin_allowed(&state, &parts.headers) {
        return RpcError::new(
            StatusCode::FORBIDDEN,
            -32600,
            "This Origin may not call the MCP server.",
        )
        .respond(None);
    }
    // The credential and the workspace, as for REST: 401 (with WWW-Authenticate) or the
    // policy chain's answer.
    let auth = match <Auth as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(auth) => auth,
        Err(error) => return error.into_response(),
    };
    let limit = state.config.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return Error::PayloadTooLarge { limit }.into_response(),
    };
    respond(&state, &auth, &parts.headers, &bytes).await
}

/// Answers one JSON-RPC message.
async fn respond(state: &AppState, auth: &Auth, headers: &HeaderMap, bytes: &Bytes) -> Response {
    // The REST bodies' strict parser: a member named twice, a NUL character (PostgreSQL
    // cannot store it), nesting past 128 or an overlong array is refused here, before any
    // tool sees the arguments.
    let message: Value = match strict::parse(bytes) {
        Ok(message) => message,
        Err(error) => {
            return RpcError::new(
                StatusCode::BAD_REQUEST,
                -32700,
                format!("Parse error: {}", error.message()),
            )
            .respond(None)
        }
    };
    let invalid = |message: &str| RpcError::new(StatusCode::BAD_REQUEST, -32600, message);
    let Value::Object(message) = message else {
        return invalid(if message.is_array() {
            "Batches are not supported: send one JSON-RPC message per request."
        } else {
            "A JSON-RPC message is an object."
        })
        .respond(None);
    };
    let id = message.get("id").cloned();
    if message.get("jsonrpc") != Some(&json!("2.0")) {
        return invalid("`jsonrpc` must be \"2.0\".").respond(id.as_ref());
    }
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response to nothing we asked, or an error the client reports: accepted.
        if id.is_some() && (message.contains_key("result") || message.contains_key("error")) {
            return StatusCode::ACCEPTED.into_response();
        }
        return invalid("A request needs a `method`.").respond(id.as_ref());
    };
    let Some(id) = id else {
        // A notification: nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    };
    if !(id.is_string() || id.is_i64() || id.is_u64()) {
        return invalid("A request id is a string or an integer.").respond(None);
    }
    let params = match message.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => {
            return RpcError::new(
                StatusCode::BAD_REQUEST,
                -32602,
                "`params` must be an object.",
            )
            .respond(Some(&id))
        }
    };
    let era = match era(headers, method, &params) {
        Ok(era) => era,
        Err(error) => return error.respond(Some(&id)),
    };
    match dispatch(state, auth, era, method, &params).await {
        Ok(mut result) => {
            if era == Era::Modern {
                result["resultType"] = json!("complete");
            }
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
        }
        Err(failure) => failure.into_rpc(era).respond(Some(&id)),
    }
}

/// The request's era, after the transport rules of that era.
fn era(headers: &HeaderMap, method: &str, params: &Map<String, Value>) -> Result<Era, RpcError> {
    let bad = |code: i64, message: String| RpcError::new(StatusCode::BAD_REQUEST, code, message);
    let header_version = header_text(headers, "mcp-protocol-version");
    let meta = params.get("_meta").and_then(Value::as_object);
    let Some(version) = meta.and_then(|m| m.get(META_VERSION)) else {
        if header_version.as_deref() == Some(MODERN_VERSION) {
            return Err(bad(
                -32602,
                format!(
                    "Under {MODERN_VERSION} every request carries `_meta[\"{META_VERSION}\"]`."
                ),
            ));
        }
        if method == "initialize" {
            return Ok(Era::Handshake(negotiate(params)));
        }
        return match header_version.as_deref() {
            // Taken as the oldest revision served (a client that never sent one).
            None => Ok(Era::Handshake(HANDSHAKE_VERSIONS[0])),
            Some(v) => match HANDSHAKE_VERSIONS.iter().find(|h| **h == v) {
                Some(version) => Ok(Era::Handshake(version)),
                None => Err(
                    bad(-32600, format!("Unsupported MCP-Protocol-Version `{v}`."))
                        .with_data(json!({"supported": SUPPORTED, "requested": v})),
                ),
            },
        };
    };
    let version = version.as_str().unwrap_or_default();
    // Modern: the headers must repeat what the body says.
    let mismatch = |what: &str| bad(-32020, format!("Header mismatch: {what}"));
    if header_version.as_deref() != Some(version) {
        return Err(mismatch(
            "MCP-Protocol-Version must equal the version in `_meta`.",
        ));
    }
    if header_text(headers, "mcp-method").as_deref() != Some(method) {
        return Err(mismatch("Mcp-Method must equal the request's method."));
    }
    let name_member = match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(member) = name_member {
        let expected = params.get(member).and_then(Value::as_str);
        if expected.is_none() || header_text(headers, "mcp-name").as_deref() != expected {
            return Err(mismatch(&format!("Mcp-Name must equal `params.{member}`.")));
        }
    }
    if version != MODERN_VERSION {
        return Err(bad(-32022, "Unsupported protocol version".into())
            .with_data(json!({"supported": SUPPORTED, "requested": version})));
    }
    if meta.is_none_or(|m| !m.get(META_CAPABILITIES).is_some_and(Value::is_object)) {
        return Err(bad(
            -32602,
            format!(
                "Under {MODERN_VERSION} every request carries `_meta[\"{META_CAPABILITIES}\"]`."
            ),
        ));
    }
    Ok(Era::Modern)
}

/// The handshake version to answer `initialize` with: the client's when served, else
/// the newest.
fn negotiate(params: &Map<String, Value>) -> &'static str {
    let requested = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    HANDSHAKE_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(HANDSHAKE_VERSIONS[HANDSHAKE_VERSIONS.len() - 1])
}

fn server_info() -> Value {
    json!({"name": "pulsar", "title": "Pulsar", "version": env!("CARGO_PKG_VERSION")})
}

fn capabilities() -> Value {
    json!({"tools": {"listChanged": false}, "resources": {}, "prompts": {}})
}

const INSTRUCTIONS: &str = mcp_servers::INSTRUCTIONS;

/// Adds the caching hints a modern list or read carries.
fn cacheable(era: Era, mut result: Value) -> Value {
    if era == Era::Modern {
        result["ttlMs"] = json!(0);
        result["cacheScope"] = json!("private");
    }
    result
}

/// A cursor: an opaque token for a position.
fn cursor(kind: &str, position: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{position}"))
}

fn position(kind: &str, params: &Map<String, Value>) -> Result<usize, Failure> {
    let Some(token) = params.get("cursor") else {
        return Ok(0);
    };
    let invalid = || Failure::InvalidParams("Invalid cursor.".into());
    let token = token.as_str().ok_or_else(invalid)?;
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(invalid)?;
    text.strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|n| n.parse().ok())
        .ok_or_else(invalid)
}

fn string_param<'a>(params: &'a Map<String, Value>, name: &str) -> Result<&'a str, Failure> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::InvalidParams(format!("`params.{name}` (a string) is required.")))
}

/// `params.arguments`: an object, or none.
fn arguments_param(params: &Map<String, Value>) -> Result<Map<String, Value>, Failure> {
    match params.get("arguments") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(arguments)) => Ok(arguments.clone()),
        Some(_) => Err(Failure::InvalidParams(
            "`arguments` must be an object.".into(),
        )),
    }
}

async fn dispatch(
    state: &AppState,
    auth: &Auth,
    era: Era,
    method: &str,
    params: &Map<String, Value>,
) -> Result<Value, Failure> {
    let registry = Registry::get();
    match method {
        "initialize" => match era {
            Era::Handshake(version) => Ok(json!({
                "protocolVersion": version,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
            })),
            // Modern clients do not initialize.
            Era::Modern => Err(Failure::MethodNotFound(method.into())),
        },
        "server/discover" => Ok(cacheable(
            Era::Modern,
            json!({
                "supportedVersions": SUPPORTED,
                "capabilities": capabilities(),
                "serverInfo": server_info(),
                "instructions": INSTRUCTIONS,
                "_meta": {"io.modelcontextprotocol/serverInfo": server_info()},
            }),
        )),
        "ping" if era != Era::Modern => Ok(json!({})),
        "tools/list" => {
            let start = position("tools", params)?;
            let visible: Vec<Value> = registry.visible(auth).map(|t| t.describe()).collect();
            if start > visible.len() {
                return Err(Failure::InvalidParams("Invalid cursor.".into()));
            }
            let end = (start + TOOLS_PAGE).min(visible.len());
            let mut result = json!({"tools": visible[start..end]});
            if end < visible.len() {
                result["nextCursor"] = json!(cursor("tools", end));
            }
            Ok(cacheable(era, result))
        }
        "tools/call" => {
            let name = string_param(params, "name")?;
            let tool = registry
                .find(name)
                .ok_or_else(|| Failure::InvalidParams(format!("Unknown tool: {name}")))?;
            let arguments = arguments_param(params)?;
            Ok(registry
                .call(state, auth, tool, arguments)
                .await
                .to_result())
        }
        "resources/list" => {
            let page = position("resources", params)? + 1;
            let (items, more) = resources::list(state, auth, page as u32).await?;
            let mut result = json!({"resources": items});
            if more {
                result["nextCursor"] = json!(cursor("resources", page));
            }
            Ok(cacheable(era, result))
        }
        "resources/templates/list" => {
            if position("templates", params)? != 0 {
                return Err(Failure::InvalidParams("Invalid cursor.".into()));
            }
            Ok(cacheable(
                era,
                json!({"resourceTemplates": resources::templates(auth)}),
            ))
        }
        "resources/read" => {
            let uri = string_param(params, "uri")?;
            match resources::read(state, auth, uri).await {
                Ok(contents) => Ok(cacheable(era, json!({"contents": [contents.to_json()]}))),
                Err(ReadError::NotFound(message)) => {
                    Err(Failure::NotFound(message, json!({"uri": uri})))
                }
                Err(ReadError::Denied(message)) => Err(Failure::InvalidParams(message)),
                Err(ReadError::Failed(error)) => Err(error.into()),
            }
        }
        "prompts/list" => {
            if position("prompts", params)? != 0 {
                return Err(Failure::InvalidParams("Invalid cursor.".into()));
            }
            Ok(cacheable(era, json!({"prompts": resources::prompts(auth)})))
        }
        "prompts/get" => {
            let name = string_param(params, "name")?;
            let arguments = arguments_param(params)?;
            resources::prompt(state, auth, name, &arguments)
                .await
                .map_err(|error| match error {
                    PromptError::Invalid(message) => Failure::InvalidParams(message),
                    PromptError::Failed(error) => error.into(),
                })
        }
        other => Err(Failure::MethodNotFound(other.into())),
    }
}
