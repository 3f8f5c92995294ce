//! `/auth`: sign-up, login, the current session, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use pulsar_domain::credentials;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::user::{self, User, UserCommand};
use pulsar_domain::validate;
use pulsar_domain::workspace::Tier;
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::identity;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ErrorOut;
use crate::application::authentication::{self as auth, primary_workspace};
use crate::application::error::{is_unique_violation, Error, Result};
use crate::application::Principal;
use crate::application::RequestContext;
use crate::http::extract::Json;
use crate::http::middleware::no_content;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(session))
        .routes(routes!(logout))
}

/// `POST /auth/signup`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupIn {
    #[schema(format = Email, max_length = 254, pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")]
    pub email: String,
    /// 10 to 512 characters (any but NUL).
    #[schema(min_length = 10, max_length = 512, pattern = r"^[^\u0000]*$")]
    pub password: String,
    #[schema(
        max_length = 100,
        pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
    )]
    pub name: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
    )]
    pub workspace_name: String,
}

/// `POST /auth/login`: email and password, or an API key's two halves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub email: Option<String>,
    pub password: Option<String>,
    #[serde(rename = "apiKey")]
    pub api_key: Option<String>,
    #[serde(rename = "apiSecret")]
    pub api_secret: Option<String>,
}

/// Either pair, never a mix: the document says so with `oneOf`.
impl utoipa::PartialSchema for LoginIn {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let text = |max: usize| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(max))
                .pattern(Some(r"^[^\u0000]*$"))
        };
        let pair = |(a, a_max): (&str, usize), (b, b_max): (&str, usize), title: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .title(Some(title))
                .property(a, text(a_max))
                .property(b, text(b_max))
                .required(a)
                .required(b)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .item(pair(("email", 254), ("password", 512), "password"))
            .item(pair(("apiKey", 64), ("apiSecret", 128), "api key"))
            .description(Some(
                "Email and password, or an API key's `apiKey` and `apiSecret` halves.",
            ))
            .into()
    }
}

impl ToSchema for LoginIn {}

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

async fn session_out(
    state: &AppState,
    token: String,
    expires_at: DateTime<Utc>,
    principal: PrincipalOut,
) -> Result<SessionOut> {
    let primary = primary_workspace(&state.pool, &principal.id).await?;
    let (primary_workspace, scopes) = match primary {
        Some((workspace_id, role)) => {
            let row = sqlx::query("SELECT name, slug FROM workspaces WHERE id = $1")
                .bind(&workspace_id)
                .fetch_one(&state.pool)
                .await?;
            (
                Some(WorkspaceRefOut {
                    id: workspace_id,
                    name: row.try_get("name")?,
                    slug: row.try_get("slug")?,
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

/// Create an account, a workspace you own, and a session.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupIn,
    responses((status = 201, body = SessionOut), (status = 403, body = ErrorOut, description = "sign-up is closed"),
        (status = 422, body = ErrorOut)))]
async fn signup(
    State(state): State<AppState>,
    context: RequestContext,
    Json(input): Json<SignupIn>,
) -> Result<Response> {
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
    super::workspaces::create_owned(
        &state,
        &metadata,
        &user_id,
        input.workspace_name.trim(),
        None,
        Tier::Free,
        "workspace_name",
    )
    .await?;
    let (token, expires_at) = auth::create_session(&state.pool, Some(&user_id), None).await?;
    let out = session_out(&state, token, expires_at, user_out(user_id, name, email)).await?;
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// Exchange credentials for a session token (one hour, sliding).
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginIn,
    responses((status = 200, body = SessionOut), (status = 401, body = ErrorOut), (status = 422, body = ErrorOut)))]
async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    Json(input): Json<LoginIn>,
) -> Result<Response> {
    let invalid = || Error::Unauthorized("The credentials are invalid.".into());
    let (email, password) = match (input.email, input.password, input.api_key, input.api_secret) {
        (Some(email), Some(password), None, None) => (email, password),
        (None, None, Some(api_key), Some(api_secret)) => {
            return key_login(&state, &context, &api_key, &api_secret).await;
        }
        _ => {
            return Err(Error::invalid(
                "body",
                "Send either email and password, or apiKey and apiSecret.",
            ))
        }
    };
    let email = validate::normalize_email(&email);
    let row = sqlx::query("SELECT user_id, password_hash FROM user_credentials WHERE email = $1")
        .bind(&email)
        .fetch_optional(&state.pool)
        .await?;
    let (user_id, phc) = match &row {
        Some(row) => (
            Some(row.try_get::<String, _>("user_id")?),
            row.try_get::<String, _>("password_hash")?,
        ),
        None => (None, credentials::dummy_password_hash().to_string()),
    };
    // Verify even when the user does not exist, so timing does not tell emails apart.
    let matches =
        tokio::task::spawn_blocking(move || credentials::verify_password(&password, &phc))
            .await
            .map_err(Error::internal)?;
    let user_id = user_id.filter(|_| matches).ok_or_else(invalid)?;
    let user = sqlx::query("SELECT email, name FROM users WHERE id = $1")
        .bind(&user_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(invalid)?;
    let (token, expires_at) = auth::create_session(&state.pool, Some(&user_id), None).await?;
    let out = session_out(
        &state,
        token,
        expires_at,
        user_out(user_id, user.try_get("name")?, user.try_get("email")?),
    )
    .await?;
    Ok(axum::Json(out).into_response())
}

/// `{apiKey, apiSecret}` → a session carrying the key's scopes, allowlist and tier, which
/// dies with the key. The whole policy chain applies, so a key refused at the door
/// cannot trade itself for a session.
async fn key_login(
    state: &AppState,
    context: &RequestContext,
    api_key: &str,
    api_secret: &str,
) -> Result<Response> {
    let parsed = pulsar_domain::keys::parse_pair(api_key, api_secret)
        .map_err(|_| Error::Unauthorized("The credentials are invalid.".into()))?;
    let entry =
        auth::verify_key(state, parsed, context.client_ip.0).map_err(|error| match error {
            Error::Unauthorized(_) => Error::Unauthorized("The credentials are invalid.".into()),
            other => other,
        })?;
    let (token, expires_at) = auth::create_session(&state.pool, None, Some(&entry.key_id)).await?;
    Ok(axum::Json(key_session_out(state, token, expires_at, &entry).await?).into_response())
}

async fn key_session_out(
    state: &AppState,
    token: String,
    expires_at: DateTime<Utc>,
    entry: &pulsar_projections::key_table::KeyEntry,
) -> Result<SessionOut> {
    let row = sqlx::query("SELECT name, slug FROM workspaces WHERE id = $1")
        .bind(&entry.workspace_id)
        .fetch_optional(&state.pool)
        .await?;
    let primary_workspace = match row {
        Some(row) => Some(WorkspaceRefOut {
            id: entry.workspace_id.clone(),
            name: row.try_get("name")?,
            slug: row.try_get("slug")?,
            role: None,
        }),
        None => None,
    };
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

/// The session behind the presented token.
#[utoipa::path(get, path = "/auth/session", tag = "auth",
    responses((status = 200, body = SessionOut), (status = 401, body = ErrorOut)),
    security(("bearer" = [])))]
async fn session(
    State(state): State<AppState>,
    principal: Principal,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, token)| token.trim().to_string())
        .unwrap_or_default();
    let session = principal
        .session
        .as_ref()
        .ok_or_else(|| Error::BadRequest("This credential is not a session token.".into()))?;
    let out = match principal.key() {
        Some(entry) => key_session_out(&state, token, session.expires_at, entry).await?,
        None => {
            session_out(
                &state,
                token,
                session.expires_at,
                PrincipalOut {
                    principal_type: "user".into(),
                    id: principal.id.clone(),
                    name: principal.name.clone(),
                    email: principal.email.clone(),
                },
            )
            .await?
        }
    };
    Ok(axum::Json(out).into_response())
}

/// End the session: its token stops working at once.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorOut)),
    security(("bearer" = [])))]
async fn logout(State(state): State<AppState>, principal: Principal) -> Result<Response> {
    let session = principal
        .session
        .ok_or_else(|| Error::BadRequest("This credential is not a session token.".into()))?;
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(session.token_hash)
        .execute(&state.pool)
        .await?;
    Ok(no_content())
}
