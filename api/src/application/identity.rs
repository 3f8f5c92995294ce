//! Accounts and sessions: sign-up, login (with a password or an API key's two halves),
//! the current session, logout. Passwords are stored as argon2id hashes in the write-side
//! `user_credentials` table, sessions as SHA-256 hashes of their tokens; neither ever
//! enters an event.

use chrono::{DateTime, Utc};
use pulsar_domain::credentials;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::user::{self, User, UserCommand};
use pulsar_domain::validate;
use pulsar_domain::workspace::Tier;
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::identity;
use pulsar_projections::key_table::KeyEntry;
use serde::Serialize;
use utoipa::ToSchema;

use crate::application::authentication::{self as auth, primary_workspace};
use crate::application::error::is_unique_violation;
use crate::application::AppState;
use crate::application::{workspaces, Error, Principal, RequestContext, Result};

/// The authenticated principal.
#[derive(Debug, Serialize, ToSchema)]
pub struct PrincipalOut {
    /// `user` or `api_key`.
    #[serde(rename = "type")]
    pub principal_type: String,
    pub id: String,
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The workspace a session acts in by default.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceRefOut {
    pub id: String,
    pub name: String,
    pub slug: String,
    /// The user's role; `null` for a key's session (a key has scopes, not a role).
    pub role: Option<String>,
}

/// A session: the login, sign-up and `GET /auth/session` payload.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionOut {
    /// `pst_…`; send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub principal: PrincipalOut,
    #[serde(rename = "primaryWorkspace")]
    pub primary_workspace: Option<WorkspaceRefOut>,
    pub scopes: Vec<String>,
}

/// What sign-up takes.
#[derive(Debug, Clone)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub name: Option<String>,
    pub workspace_name: String,
}

fn invalid() -> Error {
    Error::Unauthorized("The credentials are invalid.".into())
}

async fn session_out(
    state: &AppState,
    token: String,
    expires_at: DateTime<Utc>,
    principal: PrincipalOut,
) -> Result<SessionOut> {
    let primary = primary_workspace(&state.pool, &principal.id).await?;
    let (primary_workspace, scopes) = match primary {
        Some((workspace_id, role)) => {
            let (name, slug) = identity::workspace_name(&state.pool, &workspace_id)
                .await?
                .ok_or_else(|| Error::internal("a member's workspace has no row"))?;
            (
                Some(WorkspaceRefOut {
                    id: workspace_id,
                    name,
                    slug,
                    role: Some(role.as_str().to_string()),
                }),
                role.scopes().to_strings(),
            )
        }
        None => (None, Vec::new()),
    };
    Ok(SessionOut {
        token,
        expires_at,
        principal,
        primary_workspace,
        scopes,
    })
}

async fn key_session_out(
    state: &AppState,
    token: String,
    expires_at: DateTime<Utc>,
    entry: &KeyEntry,
) -> Result<SessionOut> {
    let primary_workspace = identity::workspace_name(&state.pool, &entry.workspace_id)
        .await?
        .map(|(name, slug)| WorkspaceRefOut {
            id: entry.workspace_id.clone(),
            name,
            slug,
            role: None,
        });
    Ok(SessionOut {
        token,
        expires_at,
        principal: PrincipalOut {
            principal_type: "api_key".into(),
            id: entry.key_id.clone(),
            name: Some(entry.name.clone()),
            email: None,
        },
        primary_workspace,
        scopes: entry.scopes.to_strings(),
    })
}

fn user_out(id: String, name: Option<String>, email: String) -> PrincipalOut {
    PrincipalOut {
        principal_type: "user".into(),
        id,
        name,
        email: Some(email),
    }
}

async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || credentials::hash_password(&password))
        .await
        .map_err(Error::internal)?
        .map_err(Error::internal)
}

/// The user who signed up with `email` (normalised), if any.
pub async fn user_id_by_email(state: &AppState, email: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT user_id FROM user_credentials WHERE email = $1")
            .bind(email)
            .fetch_optional(&state.pool)
            .await?,
    )
}

/// Creates an account, a workspace it owns (tier `free`), and a session.
pub async fn sign_up(
    state: &AppState,
    context: &RequestContext,
    input: Registration,
) -> Result<SessionOut> {
    if !state.config.allow_signup {
        return Err(Error::AccessDenied(
            "Sign-up is closed on this server.".into(),
        ));
    }
    let email = validate::normalize_email(&input.email);
    let name = input
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty());
    let mut errors = user::validate_registration(&email, name.as_deref());
    errors.check("password", credentials::check_password(&input.password));
    errors.check(
        "workspace_name",
        validate::required_text("workspace name", &input.workspace_name, 100),
    );
    errors.into_result()?;

    let user_id = ids::new_id(prefix::USER);
    let metadata = EventMetadata {
        actor: Actor::user(&user_id),
        request_id: context.request_id.clone(),
        client_ip: context.client_ip.0.to_string(),
        user_agent: context.user_agent.clone(),
        workspace_id: None,
    };
    let password_hash = hash_password(input.password).await?;
    // The credentials row doubles as the email's uniqueness claim.
    sqlx::query("INSERT INTO user_credentials (user_id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(&user_id)
        .bind(&email)
        .bind(&password_hash)
        .execute(&state.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e, "user_credentials_email_key") {
                Error::invalid("email", "The email has already been taken.")
            } else {
                e.into()
            }
        })?;
    let registered = state
        .commands
        .execute::<User>(
            &user_id,
            UserCommand::RegisterUser {
                email: email.clone(),
                name: name.clone(),
            },
            &metadata,
            &[identity::NAME],
        )
        .await;
    if let Err(error) = registered {
        sqlx::query("DELETE FROM user_credentials WHERE user_id = $1")
            .bind(&user_id)
            .execute(&state.pool)
            .await?;
        return Err(error);
    }
    workspaces::create_owned(
        state,
        &metadata,
        &user_id,
        input.workspace_name.trim(),
        None,
        Tier::Free,
        "workspace_name",
    )
    .await?;
    let (token, expires_at) = auth::create_session(&state.pool, Some(&user_id), None).await?;
    session_out(state, token, expires_at, user_out(user_id, name, email)).await
}

/// Email and password → a session (one hour, sliding). Wrong credentials are 401 with
/// the same message whichever part was wrong, in the same time.
pub async fn log_in(state: &AppState, email: &str, password: String) -> Result<SessionOut> {
    let email = validate::normalize_email(email);
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT user_id, password_hash FROM user_credentials WHERE email = $1")
            .bind(&email)
            .fetch_optional(&state.pool)
            .await?;
    let (user_id, phc) = match row {
        Some((user_id, phc)) => (Some(user_id), phc),
        None => (None, credentials::dummy_password_hash().to_string()),
    };
    // Verify even when the user does not exist, so timing does not tell emails apart.
    let matches =
        tokio::task::spawn_blocking(move || credentials::verify_password(&password, &phc))
            .await
            .map_err(Error::internal)?;
    let user_id = user_id.filter(|_| matches).ok_or_else(invalid)?;
    let (email, name) = identity::user(&state.pool, &user_id)
        .await?
        .ok_or_else(invalid)?;
    let (token, expires_at) = auth::create_session(&state.pool, Some(&user_id), None).await?;
    session_out(state, token, expires_at, user_out(user_id, name, email)).await
}

/// `{apiKey, apiSecret}` → a session carrying the key's scopes, allowlist and tier, which
/// dies with the key. The whole policy chain applies, so a key refused at the door
/// cannot trade itself for a session.
pub async fn log_in_with_key(
    state: &AppState,
    context: &RequestContext,
    api_key: &str,
    api_secret: &str,
) -> Result<SessionOut> {
    let parsed = pulsar_domain::keys::parse_pair(api_key, api_secret).map_err(|_| invalid())?;
    let entry =
        auth::verify_key(state, parsed, context.client_ip.0).map_err(|error| match error {
            Error::Unauthorized(_) => invalid(),
            other => other,
        })?;
    let (token, expires_at) = auth::create_session(&state.pool, None, Some(&entry.key_id)).await?;
    key_session_out(state, token, expires_at, &entry).await
}

/// The session `principal` came with (`token` is what it presented).
pub async fn session(state: &AppState, principal: &Principal, token: String) -> Result<SessionOut> {
    let session = principal
        .session
        .as_ref()
        .ok_or_else(|| Error::BadRequest("This credential is not a session token.".into()))?;
    match principal.key() {
        Some(entry) => key_session_out(state, token, session.expires_at, entry).await,
        None => {
            session_out(
                state,
                token,
                session.expires_at,
                PrincipalOut {
                    principal_type: "user".into(),
                    id: principal.id.clone(),
                    name: principal.name.clone(),
                    email: principal.email.clone(),
                },
            )
            .await
        }
    }
}

/// Ends the session `principal` came with: its token stops working at once.
pub async fn log_out(state: &AppState, principal: &Principal) -> Result<()> {
    let session = principal
        .session
        .as_ref()
        .ok_or_else(|| Error::BadRequest("This credential is not a session token.".into()))?;
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(&session.token_hash)
        .execute(&state.pool)
        .await?;
    Ok(())
}
