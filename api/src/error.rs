//! The one error type of the HTTP edge. Every error becomes API.md's envelope:
//! `{error, message, errors?, request_id}`; internal details are logged, never shown.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cqrs_es::AggregateError;
use pulsar_domain::{DomainError, ValidationErrors};
use serde_json::{json, Map, Value};

use crate::request_id;

/// Handler result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a request can fail, one status and code each.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    /// The key is older than its `max_age_days` policy.
    #[error("key rotation required")]
    KeyRotationRequired,
    /// The client IP is outside the key's allowlist.
    #[error("ip not allowed")]
    IpNotAllowed,
    /// Over the tier's rate limit.
    #[error("rate limit exceeded")]
    RateLimited(crate::rate_limit::Decision),
    #[error("{0}")]
    AccessDenied(String),
    /// The workspace's tier allows no more of `feature`.
    #[error("feature limit reached")]
    FeatureLimitReached {
        feature: &'static str,
        limit: i64,
        tier: &'static str,
        upgrade_url: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    /// `If-Match` named a version that is no longer current.
    #[error("precondition failed")]
    PreconditionFailed,
    /// A repeat of an idempotent request while the first is still running.
    #[error("idempotency conflict")]
    IdempotencyConflict,
    /// An idempotency key reused with a different request.
    #[error("idempotency key reused")]
    IdempotencyKeyReused,
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("{0}")]
    Validation(ValidationErrors),
    #[error("{0}")]
    Unavailable(String),
    /// Anything unexpected: logged with its cause, shown as a bare 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A 422 with one field message.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(ValidationErrors::single(field, message))
    }

    /// An unexpected failure; `context` is logged, never returned.
    pub fn internal(context: impl std::fmt::Display) -> Self {
        Self::Internal(context.to_string())
    }

    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found."))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::KeyRotationRequired => StatusCode::UNAUTHORIZED,
            Self::IpNotAllowed => StatusCode::FORBIDDEN,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::AccessDenied(_) | Self::FeatureLimitReached { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::IdempotencyConflict => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error` code of API.md section 3.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::KeyRotationRequired => "key_rotation_required",
            Self::IpNotAllowed => "ip_not_allowed",
            Self::RateLimited(_) => "rate_limit_exceeded",
            Self::AccessDenied(_) => "access_denied",
            Self::FeatureLimitReached { .. } => "feature_limit_reached",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Validation(_) => "validation_failed",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "server_error",
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Validation(_) => "The given data was invalid.".into(),
            Self::MethodNotAllowed => "The method is not allowed for this resource.".into(),
            Self::PayloadTooLarge { limit } => {
                format!("The request body is larger than the limit of {limit} bytes.")
            }
            Self::UnsupportedMediaType => {
                "The request body must be JSON, sent with Content-Type: application/json.".into()
            }
            Self::Internal(_) => "Something went wrong on our side.".into(),
            Self::KeyRotationRequired => {
                "This key is older than its maximum age; rotate it to keep using the API.".into()
            }
            Self::IpNotAllowed => {
                "Requests from this IP address are not allowed for this key.".into()
            }
            Self::RateLimited(d) => format!(
                "Rate limit of {} requests per minute exceeded; retry in {} s.",
                d.per_minute,
                d.retry_after.as_secs_f64().ceil()
            ),
            Self::PreconditionFailed => {
                "The resource changed since the version named in If-Match; read it again.".into()
            }
            Self::IdempotencyConflict => {
                "A request with this Idempotency-Key is still being processed; retry shortly."
                    .into()
            }
            Self::IdempotencyKeyReused => {
                "This Idempotency-Key was used with a different request.".into()
            }
            Self::FeatureLimitReached {
                feature,
                limit,
                tier,
                ..
            } => format!("The {tier} plan allows {limit} {feature}; upgrade to create more."),
            other => other.to_string(),
        }
    }
}

/// The error envelope; also used for errors produced outside handlers.
pub fn envelope(code: &str, message: &str, extra: Option<Map<String, Value>>) -> Value {
    let mut body = Map::new();
    body.insert("error".into(), json!(code));
    body.insert("message".into(), json!(message));
    if let Some(extra) = extra {
        body.extend(extra);
    }
    if let Some(id) = request_id::current() {
        body.insert("request_id".into(), json!(id));
    }
    Value::Object(body)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(context) => tracing::error!(error = %context, "request failed"),
            Self::Unavailable(context) => tracing::warn!(error = %context, "request failed"),
            _ => tracing::debug!(status = status.as_u16(), error = %self, "request refused"),
        }
        let extra = match &self {
            Self::Validation(errors) => {
                let mut extra = Map::new();
                extra.insert("errors".into(), json!(errors.fields()));
                Some(extra)
            }
            Self::RateLimited(decision) => {
                let mut extra = Map::new();
                extra.insert(
                    "retry_after".into(),
                    json!(decision.retry_after.as_secs_f64().ceil() as u64),
                );
                extra.insert("limit".into(), json!(decision.limit));
                extra.insert("remaining".into(), json!(decision.remaining));
                extra.insert(
                    "reset_at".into(),
                    json!(chrono::DateTime::from_timestamp(decision.reset_at, 0)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))),
                );
                Some(extra)
            }
            Self::FeatureLimitReached {
                feature,
                limit,
                upgrade_url,
                ..
            } => {
                let mut extra = Map::new();
                extra.insert("feature".into(), json!(feature));
                extra.insert("limit".into(), json!(limit));
                extra.insert("upgrade_url".into(), json!(upgrade_url));
                Some(extra)
            }
            _ => None,
        };
        let body = envelope(self.code(), &self.message(), extra);
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::RateLimited(decision) = &self {
            crate::auth::rate_limit_headers(response.headers_mut(), decision);
            let seconds = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<DomainError> for Error {
    fn from(error: DomainError) -> Self {
        match error {
            DomainError::Validation(errors) => Self::Validation(errors),
            DomainError::NotFound(what) => Self::NotFound(format!("The {what} was not found.")),
            DomainError::AlreadyExists(what) => {
                Self::Conflict(format!("The {what} already exists."))
            }
            DomainError::Conflict(message) => Self::Conflict(message),
            DomainError::Forbidden(message) => Self::AccessDenied(message),
        }
    }
}

impl From<AggregateError<DomainError>> for Error {
    fn from(error: AggregateError<DomainError>) -> Self {
        match error {
            AggregateError::UserError(error) => error.into(),
            AggregateError::AggregateConflict => Self::Conflict(
                "The resource was changed by another request at the same time; retry.".into(),
            ),
            AggregateError::DatabaseConnectionError(e) => {
                Self::Unavailable(format!("event store unavailable: {e}"))
            }
            AggregateError::DeserializationError(e) => {
                Self::internal(format!("event store deserialization: {e}"))
            }
            AggregateError::UnexpectedError(e) => Self::internal(format!("event store: {e}")),
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                Self::Unavailable(format!("database unavailable: {error}"))
            }
            _ => Self::internal(format!("database: {error}")),
        }
    }
}

impl From<pulsar_projections::ProjectionError> for Error {
    fn from(error: pulsar_projections::ProjectionError) -> Self {
        match error {
            pulsar_projections::ProjectionError::Sql(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

/// Whether a database error is a unique violation of the named constraint.
pub fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db)
        if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}
