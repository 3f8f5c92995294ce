//! The application's one error type: every way a use case can fail, each with the
//! machine-readable code of API.md section 3 and a message safe to show. Adapters turn
//! it into their own answer (REST: [`crate::http::error`], the envelope and a status).
//! Internal details are logged, never shown.

use cqrs_es::AggregateError;
use pulsar_domain::{DomainError, ValidationErrors};

/// Handler result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a request can fail, one status and code each.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    /// A delivery that already succeeded cannot be retried.
    #[error("{0}")]
    CannotRetry(String),
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
    RateLimited(crate::application::rate_limit::Decision),
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

    /// The machine-readable `error` code of API.md section 3.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::CannotRetry(_) => "cannot_retry",
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

    /// What the caller is told.
    pub fn message(&self) -> String {
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
