//! Errors as HTTP answers: API.md's envelope `{error, message, errors?, request_id}` with
//! the status each code maps to, for every error, including those made outside handlers.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::application::Error;
use crate::http::request_id;

/// The status of an error's answer.
pub fn status(error: &Error) -> StatusCode {
    match error {
        Error::BadRequest(_) | Error::CannotRetry(_) => StatusCode::BAD_REQUEST,
        Error::Unauthorized(_) | Error::KeyRotationRequired => StatusCode::UNAUTHORIZED,
        Error::IpNotAllowed => StatusCode::FORBIDDEN,
        Error::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::AccessDenied(_) | Error::FeatureLimitReached { .. } => StatusCode::FORBIDDEN,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Error::Conflict(_) | Error::IdempotencyConflict => StatusCode::CONFLICT,
        Error::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        Error::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        Error::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
        let status = status(&self);
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
            crate::http::authenticate::rate_limit_headers(response.headers_mut(), decision);
            let seconds = decision.retry_after.as_secs_f64().ceil().max(1.0) as u64;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: say how to authenticate (MCP clients rely on it).
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"pulsar\""),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}
