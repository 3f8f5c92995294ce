//! Extractors that reject with [`Error`], so bad input always gets the envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use pulsar_domain::validate::field_error;
use pulsar_domain::ValidationErrors;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::middleware::RequestContext;

/// A JSON body: 415 without a JSON content type, 413 over the body limit, 400 when it
/// is not JSON, 422 with per-field messages when it does not fit the request type.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(Error::UnsupportedMediaType);
        }
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge { limit }
                } else {
                    Error::BadRequest("The request body could not be read.".into())
                }
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            Error::BadRequest(format!(
                "The request body is not valid JSON (line {}, column {}).",
                e.line(),
                e.column()
            ))
        })?;
        if !value.is_object() {
            return Err(Error::BadRequest(
                "The request body must be a JSON object.".into(),
            ));
        }
        serde_path_to_error::deserialize(value)
            .map(Json)
            .map_err(|error| {
                let path = error.path().to_string();
                let (field, message) = field_error(&path, error.inner());
                Error::Validation(ValidationErrors::single(field, message))
            })
    }
}

/// The configured body limit, put in request extensions so [`Json`] can report it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| Error::internal("request context layer missing"))
    }
}

/// The raw query as `(name, value)` pairs, 400 when it is not form-encoded.
#[derive(Debug, Clone, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryPairs)
            .map_err(|_| Error::BadRequest("The query string is malformed.".into()))
    }
}

impl QueryPairs {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }

    #[test]
    fn names_fields_in_messages() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct In {
            name: String,
        }
        let run = |json: &str| {
            let value: serde_json::Value = serde_json::from_str(json).expect("json");
            let error = serde_path_to_error::deserialize::<_, In>(value).expect_err("invalid");
            field_error(&error.path().to_string(), error.inner())
        };
        assert_eq!(
            run("{}"),
            ("name".into(), "The name field is required.".into())
        );
        assert_eq!(
            run(r#"{"name": 5}"#),
            (
                "name".into(),
                "The name must be a string, not integer `5`.".into()
            )
        );
        assert_eq!(run(r#"{"name": "a", "x": 1}"#).0, "x");
    }
}

/// A JSON body that may be absent: an empty body (any or no content type) is
/// `T::default()`; a present one follows [`Json`]'s rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub T);

impl<S, T> FromRequest<S> for OptionalJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Default,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        // Empty means the body is known to hold nothing (no or a zero Content-Length, no
        // chunked body). Anything else is a body, held to `Json`'s rules: a body without a
        // JSON content type is 415, never silently ignored.
        let empty = axum::body::HttpBody::size_hint(request.body()).exact() == Some(0);
        if empty {
            return Ok(OptionalJson(T::default()));
        }
        Json::<T>::from_request(request, state)
            .await
            .map(|Json(v)| OptionalJson(v))
    }
}

/// Deserializes a field that distinguishes absent (`None`) from `null` (`Some(None)`).
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
