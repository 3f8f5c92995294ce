//! Who is calling and what they may do.
//!
//! [`authenticate`] is the one layer every `/api/v1` route sits behind. When a request
//! carries a credential it runs API.md's policy chain, in its order, before any handler:
//!
//! 1. the credential is present and well formed (a key's checksum is checked offline),
//! 2. the key or session exists and is live (not revoked, expired, or past a rotation's
//!    grace period),
//! 3. the key is not older than its `max_age_days`,
//! 4. the client IP is in the key's allowlist,
//! 5. the scope list is not empty,
//! 6. the principal is within its tier's rate limit,
//!
//! and leaves a [`Principal`] in the request. Step 7, the route's scope, is the handler's
//! `auth.require(...)`, which reads like the route table. Keys are verified against the
//! in-memory key table: no database round trip. Every authenticated response carries
//! the `X-RateLimit-*` headers.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, Utc};
use pulsar_domain::credentials::{self, SESSION_TOKEN_PREFIX};
use pulsar_domain::ids;
use pulsar_domain::keys::{self, KEY_PREFIX};
use pulsar_domain::scopes::{Permission, Role, ScopeSet};
use pulsar_domain::workspace::Tier;
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::key_table::KeyEntry;
use sqlx::{PgPool, Row};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::middleware::RequestContext;
use crate::rate_limit::Decision;
use crate::state::AppState;

/// How long a session lives without use.
pub const SESSION_TTL: Duration = Duration::hours(1);
/// A used session is extended when less than this much of its life is left, so the
/// sliding expiry costs at most one write per minute per session.
const SESSION_SLIDE_AFTER: Duration = Duration::minutes(59);

/// What kind of principal is calling.
#[derive(Debug, Clone)]
pub enum PrincipalKind {
    User,
    /// An API key, directly or through a session made from it.
    ApiKey(Arc<KeyEntry>),
}

/// An authenticated caller, whatever credential form it used.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user id or the key id.
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The session this request came with, if any.
    pub session: Option<Session>,
    /// For a user session, the workspace the request resolved to at authentication
    /// (the one it names, else the primary one) and the user's role there, read in the
    /// same query as the session, so handlers need no second lookup.
    pub membership: Option<(String, Role)>,
    /// The workspace the request names (API.md section 1), checked to be an id.
    pub requested_workspace: Option<String>,
    pub context: RequestContext,
}

/// A session token's stored facts.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self.kind {
            PrincipalKind::User => Actor::user(&self.id),
            PrincipalKind::ApiKey(_) => Actor::api_key(&self.id),
        }
    }

    /// Metadata for the events this principal's commands append.
    pub fn metadata(&self) -> EventMetadata {
        EventMetadata {
            actor: self.actor(),
            request_id: self.context.request_id.clone(),
            client_ip: self.context.client_ip.0.to_string(),
            user_agent: self.context.user_agent.clone(),
            workspace_id: None,
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        matches!(self.kind, PrincipalKind::User).then_some(self.id.as_str())
    }

    pub fn key(&self) -> Option<&KeyEntry> {
        match &self.kind {
            PrincipalKind::ApiKey(entry) => Some(entry),
            PrincipalKind::User => None,
        }
    }

    /// The principal's role in `workspace_id`, `None` when it may not act there.
    /// A key acts only in its own workspace (with its own scopes, not a role's).
    pub async fn membership(&self, pool: &PgPool, workspace_id: &str) -> Result<Option<Role>> {
        if !ids::is_id(ids::prefix::WORKSPACE, workspace_id) {
            // Cannot name a workspace, so it is none of this principal's.
            return Ok(None);
        }
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
            PrincipalKind::ApiKey(key) => {
                Ok((key.workspace_id == workspace_id).then_some(Role::Member))
            }
        }
    }

    /// The workspace and scopes this principal acts with in `workspace_id`, or 404 when
    /// it may not act there (another tenant's workspace does not exist for it).
    pub async fn in_workspace(&self, pool: &PgPool, workspace_id: &str) -> Result<Auth> {
        let role = self
            .membership(pool, workspace_id)
            .await?
            .ok_or_else(|| Error::not_found("Workspace"))?;
        Ok(self.auth_for(workspace_id.to_string(), role))
    }

    fn auth_for(&self, workspace_id: String, role: Role) -> Auth {
        let (scopes, role) = match &self.kind {
            PrincipalKind::User => (role.scopes(), Some(role)),
            PrincipalKind::ApiKey(key) => (key.scopes, None),
        };
        Auth {
            principal: self.clone(),
            workspace_id,
            role,
            scopes,
        }
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

    /// Who acts, as the domain sees its authority: the user's role, or for a key the
    /// role whose powers a key may at most exercise over members (never owner).
    pub fn acting_role(&self) -> Role {
        self.role.unwrap_or(Role::Admin)
    }
}

fn invalid_credentials() -> Error {
    Error::Unauthorized("The credentials are invalid, expired or revoked.".into())
}

/// The credential a request presents.
enum Credential<'a> {
    Key(keys::ParsedKey<'a>),
    Session(&'a str),
}

/// Step 1: a credential, well formed; `None` when the request has none.
///
/// A request presents exactly one credential: a repeated `Authorization`, `x-api-key`
/// or `x-api-secret` header, or a bearer token together with a key pair, is refused
/// rather than guessed at (a proxy that adds its own header must not decide who calls).
fn credential(headers: &HeaderMap) -> Result<Option<Credential<'_>>> {
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

/// Steps 2 to 5 for a key: exists, secret matches (constant time), live, young enough,
/// allowed from this IP, has scopes. No database round trip.
pub fn verify_key(
    state: &AppState,
    key: keys::ParsedKey<'_>,
    client_ip: std::net::IpAddr,
) -> Result<Arc<KeyEntry>> {
    let entry = state
        .key_table
        .get(key.api_key)
        .ok_or_else(invalid_credentials)?;
    let presented = keys::secret_hash(key.api_secret);
    if !bool::from(presented.ct_eq(&entry.secret_hash)) {
        return Err(invalid_credentials());
    }
    check_key(state, entry, client_ip)
}

fn check_key(
    state: &AppState,
    entry: Arc<KeyEntry>,
    client_ip: std::net::IpAddr,
) -> Result<Arc<KeyEntry>> {
    let now = state.clock.now();
    if !entry.live(now) {
        return Err(invalid_credentials());
    }
    if entry.too_old(now) {
        return Err(Error::KeyRotationRequired);
    }
    if !entry.allowlist.is_empty() && !entry.allowlist.iter().any(|net| net.contains(&client_ip)) {
        return Err(Error::IpNotAllowed);
    }
    if entry.scopes.is_empty() {
        return Err(Error::AccessDenied("This key has no scopes.".into()));
    }
    Ok(entry)
}

/// Step 2 for a session token (a database lookup), sliding its expiry.
async fn session_principal(
    state: &AppState,
    token: &str,
    requested_workspace: Option<&str>,
    context: RequestContext,
) -> Result<(Principal, Tier)> {
    let hash = credentials::token_hash(token);
    // The tier of the workspace the request names, else of the primary one. Two
    // statements rather than `$2 IS NULL OR …`, whose generic plan would scan every
    // membership of the user.
    const NAMED: &str = "SELECT s.user_id, s.api_key_id, s.expires_at, u.email, u.name,
                mw.tier, mw.workspace_id, mw.role
           FROM sessions s LEFT JOIN users u ON u.id = s.user_id
           LEFT JOIN LATERAL (SELECT w.tier, m.workspace_id, m.role
                                FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
                               WHERE m.user_id = s.user_id AND m.workspace_id = $2) mw ON TRUE
          WHERE s.token_hash = $1 AND s.expires_at > now()";
    const PRIMARY: &str = "SELECT s.user_id, s.api_key_id, s.expires_at, u.email, u.name,
                mw.tier, mw.workspace_id, mw.role
           FROM sessions s LEFT JOIN users u ON u.id = s.user_id
           LEFT JOIN LATERAL (SELECT w.tier, m.workspace_id, m.role
                                FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id
                               WHERE m.user_id = s.user_id
                               ORDER BY m.created_at, m.workspace_id LIMIT 1) mw ON TRUE
          WHERE s.token_hash = $1 AND s.expires_at > now()";
    let query = match requested_workspace {
        Some(workspace_id) => sqlx::query(NAMED).bind(&hash).bind(workspace_id),
        None => sqlx::query(PRIMARY).bind(&hash),
    };
    let row = query
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(invalid_credentials)?;
    let mut expires_at: DateTime<Utc> = row.try_get("expires_at")?;
    let now = Utc::now();
    if expires_at - now < SESSION_SLIDE_AFTER {
        expires_at = now + SESSION_TTL;
        sqlx::query("UPDATE sessions SET expires_at = $2 WHERE token_hash = $1")
            .bind(&hash)
            .bind(expires_at)
            .execute(&state.pool)
            .await?;
    }
    let session = Some(Session {
        token_hash: hash,
        expires_at,
    });
    let api_key_id: Option<String> = row.try_get("api_key_id")?;
    if let Some(key_id) = api_key_id {
        // A session made from a key carries the key's scopes, allowlist and tier, and
        // dies with the key.
        let entry = state
            .key_table
            .get_by_id(&key_id)
            .ok_or_else(invalid_credentials)?;
        let entry = check_key(state, entry, context.client_ip.0)?;
        let tier = entry.tier;
        return Ok((
            Principal {
                id: entry.key_id.clone(),
                name: Some(entry.name.clone()),
                email: None,
                kind: PrincipalKind::ApiKey(entry),
                session,
                membership: None,
                requested_workspace: None,
                context,
            },
            tier,
        ));
    }
    let tier: Option<String> = row.try_get("tier")?;
    let workspace_id: Option<String> = row.try_get("workspace_id")?;
    let role: Option<String> = row.try_get("role")?;
    let membership = workspace_id.zip(role.as_deref().and_then(Role::parse));
    Ok((
        Principal {
            kind: PrincipalKind::User,
            id: row
                .try_get::<Option<String>, _>("user_id")?
                .ok_or_else(invalid_credentials)?,
            name: row.try_get("name")?,
            email: row.try_get("email")?,
            session,
            membership,
            requested_workspace: None,
            context,
        },
        tier.as_deref().and_then(Tier::parse).unwrap_or_default(),
    ))
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
    let (mut principal, tier) = match credential {
        Credential::Key(key) => {
            let entry = verify_key(state, key, context.client_ip.0)?;
            let tier = entry.tier;
            (
                Principal {
                    id: entry.key_id.clone(),
                    name: Some(entry.name.clone()),
                    email: None,
                    kind: PrincipalKind::ApiKey(entry),
                    session: None,
                    membership: None,
                    requested_workspace: None,
                    context,
                },
                tier,
            )
        }
        Credential::Session(token) => {
            session_principal(state, token, requested.as_deref(), context).await?
        }
    };
    principal.requested_workspace = requested;
    let bucket = match &principal.kind {
        PrincipalKind::ApiKey(key) => format!("key:{}", key.key_id),
        PrincipalKind::User => format!("user:{}", principal.id),
    };
    let decision = state.rate_limiter.check(&bucket, tier);
    if !decision.allowed {
        return Err(Error::RateLimited(decision));
    }
    if let PrincipalKind::ApiKey(key) = &principal.kind {
        state
            .usage
            .record(&key.key_id, &key.workspace_id, Utc::now());
    }
    Ok(Some((principal, decision)))
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
            .find(|(name, _)| name == crate::routes::SCOPING_PARAMETER)
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
        let requested = principal.requested_workspace.clone();
        match (&principal.kind, requested) {
            (PrincipalKind::ApiKey(key), Some(requested)) if key.workspace_id != requested => Err(
                Error::AccessDenied("This API key is bound to another workspace.".into()),
            ),
            (PrincipalKind::ApiKey(key), _) => {
                let workspace_id = key.workspace_id.clone();
                Ok(principal.auth_for(workspace_id, Role::Member))
            }
            // Resolved with the session already: no second lookup.
            (PrincipalKind::User, requested)
                if principal
                    .membership
                    .as_ref()
                    .is_some_and(|(ws, _)| requested.as_ref().is_none_or(|r| r == ws)) =>
            {
                let (workspace_id, role) = principal
                    .membership
                    .clone()
                    .ok_or_else(|| Error::internal("membership checked above"))?;
                Ok(principal.auth_for(workspace_id, role))
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

/// Creates a session for a user or a key; returns the token (shown once) and its expiry.
pub async fn create_session(
    pool: &PgPool,
    user_id: Option<&str>,
    api_key_id: Option<&str>,
) -> Result<(String, DateTime<Utc>)> {
    let token = credentials::new_session_token();
    let expires_at = Utc::now() + SESSION_TTL;
    sqlx::query("INSERT INTO sessions (token_hash, user_id, api_key_id, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(credentials::token_hash(&token))
        .bind(user_id)
        .bind(api_key_id)
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
