//! Authentication as a use case: API.md's policy chain over a credential, whichever
//! adapter read it (REST headers, MCP's HTTP request). Keys are verified against the
//! in-memory key table, with no database round trip; sessions are one query that also
//! resolves the workspace the request names and the member's role there.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use pulsar_domain::credentials;
use pulsar_domain::keys;
use pulsar_domain::scopes::Role;
use pulsar_domain::workspace::Tier;
use pulsar_projections::key_table::KeyEntry;
use sqlx::{PgPool, Row};
use subtle::ConstantTimeEq;

use crate::application::rate_limit::Decision;
use crate::application::AppState;
use crate::application::{Auth, Error, Principal, PrincipalKind, RequestContext, Result, Session};

/// How long a session lives without use.
pub const SESSION_TTL: Duration = Duration::hours(1);
/// A used session is extended when less than this much of its life is left, so the
/// sliding expiry costs at most one write per minute per session.
const SESSION_SLIDE_AFTER: Duration = Duration::minutes(59);

pub(crate) fn invalid_credentials() -> Error {
    Error::Unauthorized("The credentials are invalid, expired or revoked.".into())
}

/// A credential, well formed (a key's checksum checked offline), as an adapter read it.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Key(keys::ParsedKey<'a>),
    Session(&'a str),
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
pub(crate) async fn session_principal(
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

/// Steps 2 to 6 of the policy chain for `credential` (step 1, reading it well formed, is
/// the adapter's): the principal, with the workspace the request names, and the rate
/// limiter's decision (refused with 429 when over the limit).
pub async fn authenticate(
    state: &AppState,
    credential: Credential<'_>,
    requested: Option<String>,
    context: RequestContext,
) -> Result<(Principal, Decision)> {
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
    if let (PrincipalKind::ApiKey(key), true) = (&principal.kind, state.config.meter_usage) {
        state
            .usage
            .record(&key.key_id, &key.workspace_id, Utc::now());
    }
    Ok((principal, decision))
}

/// The principal acting in the workspace its request resolves to (the one it names, else
/// the key's own or the user's primary one), with the scopes it holds there.
pub async fn caller(state: &AppState, principal: Principal) -> Result<Auth> {
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
                    Error::AccessDenied("You belong to no workspace yet; create one first.".into())
                })?;
            Ok(principal.auth_for(workspace_id, role))
        }
    }
}

/// A user's primary workspace: the one they joined first.
pub async fn primary_workspace(pool: &PgPool, user_id: &str) -> Result<Option<(String, Role)>> {
    Ok(pulsar_projections::identity::primary_workspace(pool, user_id).await?)
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
