//! The authentication layer every `/api/v1` route sits behind: it reads a credential
//! from the headers (exactly one: step 1 of API.md's policy chain), names the workspace
//! the request asks for, runs the rest of the chain
//! ([`crate::application::authentication`]) and leaves a [`Principal`] in the request.
//! The route's scope is the handler's `auth.require(...)`, which reads like the route
//! table. Every authenticated response carries the `X-RateLimit-*` headers.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use pulsar_domain::credentials::{self, SESSION_TOKEN_PREFIX};
use pulsar_domain::ids;
use pulsar_domain::keys::{self, KEY_PREFIX};

use crate::application::authentication::{self, invalid_credentials, Credential};
use crate::application::rate_limit::Decision;
use crate::application::AppState;
use crate::application::{Auth, Error, Principal, RequestContext, Result};

/// Step 1: a credential, well formed; `None` when the request has none.
///
/// A request presents exactly one credential: a repeated `Authorization`, `x-api-key`
/// or `x-api-secret` header, or a bearer token together with a key pair, is refused
/// rather than guessed at (a proxy that adds its own header must not decide who calls).
pub fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>> {
    let ambiguous = || {
        Error::Unauthorized(
            "Send one credential: a single Authorization header, or one x-api-key and one x-api-secret."
                .into(),
        )
    };
    let count = |name: &str| headers.get_all(name).iter().count();
    let (authorization, key, secret) = (
        count("authorization"),
        count("x-api-key"),
        count("x-api-secret"),
    );
    if authorization > 1 || key > 1 || secret > 1 || (authorization == 1 && key + secret > 0) {
        return Err(ambiguous());
    }
    let header = |name: &str| -> Result<Option<&str>> {
        headers
            .get(name)
            .map(|v| v.to_str().map(str::trim).map_err(|_| invalid_credentials()))
            .transpose()
    };
    let malformed = || Error::Unauthorized("The credential is malformed.".into());
    if let Some(value) = header("authorization")? {
        let (scheme, token) = value.split_once(' ').ok_or_else(|| {
            Error::Unauthorized("The Authorization header must be `Bearer <token>`.".into())
        })?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Error::Unauthorized(
                "The Authorization header must be `Bearer <token>`.".into(),
            ));
        }
        let token = token.trim();
        return if token.starts_with(KEY_PREFIX) {
            keys::parse_full(token)
                .map(|k| Some(Credential::Key(k)))
                .map_err(|_| malformed())
        } else if token.starts_with(SESSION_TOKEN_PREFIX) {
            if credentials::is_session_token(token) {
                Ok(Some(Credential::Session(token)))
            } else {
                Err(malformed())
            }
        } else {
            Err(malformed())
        };
    }
    match (header("x-api-key")?, header("x-api-secret")?) {
        (Some(key), Some(secret)) => keys::parse_pair(key, secret)
            .map(|k| Some(Credential::Key(k)))
            .map_err(|_| malformed()),
        (None, None) => Ok(None),
        _ => Err(Error::Unauthorized(
            "Send both x-api-key and x-api-secret, or an Authorization header.".into(),
        )),
    }
}

/// Steps 1 to 6; `None` when the request carries no credential.
async fn resolve(state: &AppState, parts: &Parts) -> Result<Option<(Principal, Decision)>> {
    let Some(credential) = credential(&parts.headers)? else {
        return Ok(None);
    };
    let context = parts
        .extensions
        .get::<RequestContext>()
        .cloned()
        .ok_or_else(|| Error::internal("request context layer missing"))?;
    let requested = requested_workspace(parts)?;
    authentication::authenticate(state, credential, requested, context)
        .await
        .map(Some)
}

/// The `X-RateLimit-*` headers for a decision.
pub fn rate_limit_headers(headers: &mut HeaderMap, decision: &Decision) {
    for (name, value) in [
        ("x-ratelimit-limit", decision.limit.to_string()),
        ("x-ratelimit-remaining", decision.remaining.to_string()),
        ("x-ratelimit-reset", decision.reset_at.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

/// Routes that need no principal and ignore any credential sent with them: a client
/// holding a stale token must still be able to log in again.
const PUBLIC: [&str; 3] = ["/auth/signup", "/auth/login", "/openapi.json"];

/// The authentication layer (see the module docs).
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if PUBLIC
        .iter()
        .any(|p| path == *p || path.strip_prefix("/api/v1") == Some(*p))
    {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    match resolve(&state, &parts).await {
        Err(error) => error.into_response(),
        Ok(None) => next.run(Request::from_parts(parts, body)).await,
        Ok(Some((principal, decision))) => {
            parts.extensions.insert(principal);
            let mut response = next.run(Request::from_parts(parts, body)).await;
            rate_limit_headers(response.headers_mut(), &decision);
            response
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            Error::Unauthorized(
                "Authentication required: send `Authorization: Bearer <key or token>`.".into(),
            )
        })
    }
}

/// The workspace a request names: `X-Workspace-ID`, `X-Account-ID`, then `workspaceId`
/// (the first one present wins, as API.md orders them). A header given twice, or the
/// two header names naming different workspaces, is 400: ambiguous, never guessed at.
pub fn requested_workspace(parts: &Parts) -> Result<Option<String>> {
    let header = |name: &str| -> Result<Option<String>> {
        let mut values = parts.headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(Error::BadRequest(format!(
                "The {name} header is given more than once."
            )));
        }
        first
            .map(|v| {
                v.to_str()
                    .map(|v| v.trim().to_string())
                    .map_err(|_| Error::BadRequest(format!("The {name} header is not text.")))
            })
            .transpose()
            // An empty field is no field, as HTTP intermediaries treat it.
            .map(|v| v.filter(|v| !v.is_empty()))
    };
    let workspace = header("x-workspace-id")?;
    let account = header("x-account-id")?;
    if let (Some(workspace), Some(account)) = (&workspace, &account) {
        if workspace != account {
            return Err(Error::BadRequest(
                "X-Workspace-ID and X-Account-ID name different workspaces.".into(),
            ));
        }
    }
    let query = parts.uri.query().and_then(|query| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(name, _)| name == crate::rest::SCOPING_PARAMETER)
            .map(|(_, value)| value.trim().to_string())
            .filter(|value| !value.is_empty())
    });
    // Every name given must be a workspace id, even one the order passes over.
    for named in [&workspace, &account, &query].into_iter().flatten() {
        if !ids::is_id(ids::prefix::WORKSPACE, named) {
            return Err(Error::BadRequest(
                "X-Workspace-ID, X-Account-ID and workspaceId must name a workspace id (ws_…)."
                    .into(),
            ));
        }
    }
    Ok(workspace.or(account).or(query))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let principal = Principal::from_request_parts(parts, state).await?;
        authentication::caller(state, principal).await
    }
}
