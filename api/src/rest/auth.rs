//! `/auth`: sign-up, login, the current session, logout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ErrorOut;
use crate::application::identity::{self, SessionOut};
use crate::application::AppState;
use crate::application::{Error, Principal, RequestContext, Result};
use crate::http::extract::Json;
use crate::http::middleware::no_content;

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

/// Create an account, a workspace you own, and a session.
#[utoipa::path(post, path = "/auth/signup", tag = "auth", request_body = SignupIn,
    responses((status = 201, body = SessionOut), (status = 403, body = ErrorOut, description = "sign-up is closed"),
        (status = 422, body = ErrorOut)))]
async fn signup(
    State(state): State<AppState>,
    context: RequestContext,
    Json(input): Json<SignupIn>,
) -> Result<Response> {
    let registration = identity::Registration {
        email: input.email,
        password: input.password,
        name: input.name,
        workspace_name: input.workspace_name,
    };
    let out = identity::sign_up(&state, &context, registration).await?;
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
    let out = match (input.email, input.password, input.api_key, input.api_secret) {
        (Some(email), Some(password), None, None) => {
            identity::log_in(&state, &email, password).await?
        }
        (None, None, Some(api_key), Some(api_secret)) => {
            identity::log_in_with_key(&state, &context, &api_key, &api_secret).await?
        }
        _ => {
            return Err(Error::invalid(
                "body",
                "Send either email and password, or apiKey and apiSecret.",
            ))
        }
    };
    Ok(axum::Json(out).into_response())
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
    Ok(axum::Json(identity::session(&state, &principal, token).await?).into_response())
}

/// End the session: its token stops working at once.
#[utoipa::path(post, path = "/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorOut)),
    security(("bearer" = [])))]
async fn logout(State(state): State<AppState>, principal: Principal) -> Result<Response> {
    identity::log_out(&state, &principal).await?;
    Ok(no_content())
}
