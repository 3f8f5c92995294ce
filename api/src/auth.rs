//! Who is calling and what they may do: the [`Principal`] and [`Auth`] extractors.
//!
//! The policy checks of API.md section 1 run here, in its order, before any handler:
//! a well-formed credential, a live session or key, then the workspace and the route's
//! scope (checked by the handler with [`Auth::require`], which reads like the route
//! table).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use chrono::{DateTime, Duration, Utc};
use pulsar_domain::credentials::{self, SESSION_TOKEN_PREFIX};
use pulsar_domain::scopes::{Permission, Role, ScopeSet};
use pulsar_domain::{Actor, EventMetadata};
use sqlx::{PgPool, Row};

use crate::error::{Error, Result};
use crate::middleware::RequestContext;
use crate::state::AppState;

/// How long a session lives without use.
pub const SESSION_TTL: Duration = Duration::hours(1);
/// A used session is extended when less than this much of its life is left, so the
/// sliding expiry costs at most one write per minute per session.
const SESSION_SLIDE_AFTER: Duration = Duration::minutes(59);

/// What kind of principal is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    ApiKey {
        workspace_id: String,
        scopes: ScopeSet,
    },
}

/// An authenticated caller, whatever credential form it used.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The session this request came with, if any (for logout).
    pub session_hash: Option<Vec<u8>>,
    pub session_expires_at: Option<DateTime<Utc>>,
    pub context: RequestContext,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self.kind {
            PrincipalKind::User => Actor::user(&self.id),
            PrincipalKind::ApiKey { .. } => Actor::api_key(&self.id),
        }
    }

    /// Metadata for the events this principal's commands append.
    pub fn metadata(&self) -> EventMetadata {
        EventMetadata {
            actor: self.actor(),
            request_id: self.context.request_id.clone(),
            client_ip: self.context.client_ip.0.to_string(),
            user_agent: self.context.user_agent.clone(),
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        matches!(self.kind, PrincipalKind::User).then_some(self.id.as_str())
    }

    /// The principal's role in `workspace_id`, `None` when it may not act there.
    pub async fn membership(&self, pool: &PgPool, workspace_id: &str) -> Result<Option<Role>> {
        match &self.kind {
            PrincipalKind::User => {
                let role: Option<String> = sqlx::query_scalar(
                    "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
                )
                .bind(workspace_id)
                .bind(&self.id)
                .fetch_optional(pool)
                .await?;
                Ok(role.as_deref().and_then(Role::parse))
            }
            PrincipalKind::ApiKey {
                workspace_id: own, ..
            } => Ok((own == workspace_id).then_some(Role::Member)),
        }
    }

    /// The workspace and scopes this principal acts with in `workspace_id`, or 404 when
    /// it is not a member (another tenant's workspace does not exist for it).
    pub async fn in_workspace(&self, pool: &PgPool, workspace_id: &str) -> Result<Auth> {
        let role = self
            .membership(pool, workspace_id)
            .await?
            .ok_or_else(|| Error::not_found("Workspace"))?;
        Ok(self.auth_for(workspace_id.to_string(), role))
    }

    fn auth_for(&self, workspace_id: String, role: Role) -> Auth {
        let scopes = match &self.kind {
            PrincipalKind::User => role.scopes(),
            PrincipalKind::ApiKey { scopes, .. } => *scopes,
        };
        Auth {
            principal: self.clone(),
            workspace_id,
            role: matches!(self.kind, PrincipalKind::User).then_some(role),
            scopes,
        }
    }
}

/// The bearer token, `None` when there is no `Authorization` header.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Error::Unauthorized("The Authorization header is malformed.".into()))?;
    let (scheme, token) = value.split_once(' ').ok_or_else(|| {
        Error::Unauthorized("The Authorization header must be `Bearer <token>`.".into())
    })?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::Unauthorized(
            "The Authorization header must be `Bearer <token>`.".into(),
        ));
    }
    Ok(Some(token.trim()))
}

fn invalid_credentials() -> Error {
    Error::Unauthorized("The credentials are invalid, expired or revoked.".into())
}

/// Resolves a session token to its principal, sliding its expiry.
pub async fn session_principal(
    pool: &PgPool,
    token: &str,
    context: RequestContext,
) -> Result<Principal> {
    if !credentials::is_session_token(token) {
        return Err(invalid_credentials());
    }
    let hash = credentials::token_hash(token);
    let row = sqlx::query(
        "SELECT s.user_id, s.expires_at, u.email, u.name
           FROM sessions s JOIN users u ON u.id = s.user_id
          WHERE s.token_hash = $1 AND s.expires_at > now()",
    )
    .bind(&hash)
    .fetch_optional(pool)
    .await?
    .ok_or_else(invalid_credentials)?;
    let mut expires_at: DateTime<Utc> = row.try_get("expires_at")?;
    let now = Utc::now();
    if expires_at - now < SESSION_SLIDE_AFTER {
        expires_at = now + SESSION_TTL;
        sqlx::query("UPDATE sessions SET expires_at = $2 WHERE token_hash = $1")
            .bind(&hash)
            .bind(expires_at)
            .execute(pool)
            .await?;
    }
    Ok(Principal {
        kind: PrincipalKind::User,
        id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        session_hash: Some(hash),
        session_expires_at: Some(expires_at),
        context,
    })
}

/// Creates a session for a user; returns the token (shown once) and its expiry.
pub async fn create_session(pool: &PgPool, user_id: &str) -> Result<(String, DateTime<Utc>)> {
    let token = credentials::new_session_token();
    let expires_at = Utc::now() + SESSION_TTL;
    sqlx::query("INSERT INTO sessions (token_hash, user_id, expires_at) VALUES ($1, $2, $3)")
        .bind(credentials::token_hash(&token))
        .bind(user_id)
        .bind(expires_at)
        .execute(pool)
        .await?;
    // Expired sessions are dead already; sweep a few so the table does not grow.
    sqlx::query(
        "DELETE FROM sessions WHERE token_hash IN
           (SELECT token_hash FROM sessions WHERE expires_at < now() LIMIT 100)",
    )
    .execute(pool)
    .await?;
    Ok((token, expires_at))
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let context = RequestContext::from_request_parts(parts, state).await?;
        let token = bearer(&parts.headers)?;
        let principal = match token {
            Some(token) if token.starts_with(SESSION_TOKEN_PREFIX) => {
                session_principal(&state.pool, token, context).await?
            }
            Some(_) => return Err(invalid_credentials()),
            None => {
                return Err(Error::Unauthorized(
                    "Authentication required: send `Authorization: Bearer <token>`.".into(),
                ))
            }
        };
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// A principal acting in one resolved workspace, with the scopes it holds there.
#[derive(Debug, Clone)]
pub struct Auth {
    pub principal: Principal,
    pub workspace_id: String,
    /// The member's role, for user sessions.
    pub role: Option<Role>,
    pub scopes: ScopeSet,
}

impl Auth {
    /// The route's scope check: 403 `access_denied` naming the missing scope.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.scopes.allows(permission) {
            Ok(())
        } else {
            Err(Error::AccessDenied(format!(
                "This credential lacks the `{permission}` scope."
            )))
        }
    }

    pub fn metadata(&self) -> EventMetadata {
        self.principal.metadata()
    }
}

/// The workspace a request names: `X-Workspace-ID`, `X-Account-ID`, then `workspaceId`.
pub fn requested_workspace(parts: &Parts) -> Option<String> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    header("x-workspace-id")
        .or_else(|| header("x-account-id"))
        .or_else(|| {
            let query = parts.uri.query()?;
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find(|(name, _)| name == "workspaceId")
                .map(|(_, value)| value)
        })
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let requested = requested_workspace(parts);
        match (&principal.kind, requested) {
            (PrincipalKind::ApiKey { workspace_id, .. }, Some(requested))
                if *workspace_id != requested =>
            {
                Err(Error::AccessDenied(
                    "This API key is bound to another workspace.".into(),
                ))
            }
            (PrincipalKind::ApiKey { workspace_id, .. }, _) => {
                let workspace_id = workspace_id.clone();
                Ok(principal.auth_for(workspace_id, Role::Member))
            }
            (PrincipalKind::User, Some(requested)) => {
                let role = principal
                    .membership(&state.pool, &requested)
                    .await?
                    .ok_or_else(|| {
                        Error::AccessDenied("You are not a member of this workspace.".into())
                    })?;
                Ok(principal.auth_for(requested, role))
            }
            (PrincipalKind::User, None) => {
                let (workspace_id, role) = primary_workspace(&state.pool, &principal.id)
                    .await?
                    .ok_or_else(|| {
                        Error::AccessDenied(
                            "You belong to no workspace yet; create one first.".into(),
                        )
                    })?;
                Ok(principal.auth_for(workspace_id, role))
            }
        }
    }
}

/// A user's primary workspace: the one they joined first.
pub async fn primary_workspace(pool: &PgPool, user_id: &str) -> Result<Option<(String, Role)>> {
    let row = sqlx::query(
        "SELECT workspace_id, role FROM workspace_members WHERE user_id = $1
          ORDER BY created_at, workspace_id LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|row| {
        let role: String = row.try_get("role").ok()?;
        Some((row.try_get("workspace_id").ok()?, Role::parse(&role)?))
    }))
}
