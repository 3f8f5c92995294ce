//! Extractors that reject with [`Error`], so bad input always gets the envelope.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use pulsar_domain::validate::field_error;
use pulsar_domain::ValidationErrors;
use serde::de::DeserializeOwned;

use crate::application::Error;
use crate::application::RequestContext;

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
        let value = read_json(request, state).await?;
        typed(value).map(Json)
    }
}

/// The body as a JSON value (415, 413, 400 as [`Json`] documents).
async fn read_json<S: Send + Sync>(
    request: Request,
    state: &S,
) -> Result<serde_json::Value, Error> {
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
    strict::parse(&bytes)
}

/// Largest body a browser beacon may send (`POST /pixel/track`).
pub const BEACON_LIMIT: usize = 16 * 1024;

/// A JSON body from a browser: `application/json`, or `text/plain` (what
/// `navigator.sendBeacon` sends for a string, which needs no CORS preflight), at most
/// [`BEACON_LIMIT`] bytes; otherwise as [`Json`].
#[derive(Debug)]
pub struct BeaconJson<T>(pub T);

impl<S, T> FromRequest<S> for BeaconJson<T>
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
        let plain = content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"));
        if !plain && !is_json(content_type) {
            return Err(Error::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(request.into_body(), BEACON_LIMIT)
            .await
            .map_err(|_| Error::PayloadTooLarge {
                limit: BEACON_LIMIT,
            })?;
        let _ = state;
        typed(strict::parse(&bytes)?).map(BeaconJson)
    }
}

/// A JSON object as the request type: 400 when it is not an object, 422 with the
/// field named when it does not fit.
fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    if !value.is_object() {
        return Err(Error::BadRequest(
            "The request body must be a JSON object.".into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let (field, message) = field_error(&path, error.inner());
        Error::Validation(ValidationErrors::single(field, message))
    })
}

/// A kind of id that appears in paths: its prefix and how "not found" names it.
pub trait IdKind {
    const PREFIX: &'static str;
    /// E.g. `Workspace`, for "Workspace not found."
    const LABEL: &'static str;

    /// The id, when `raw` has the shape of one; otherwise 404, decided without the
    /// database (nothing of another shape was ever issued).
    fn parse(raw: &str) -> Result<String, Error> {
        if pulsar_domain::ids::is_id(Self::PREFIX, raw) {
            Ok(raw.to_string())
        } else {
            Err(Error::not_found(Self::LABEL))
        }
    }
}

/// Workspace ids (`ws_…`).
#[derive(Debug)]
pub struct WorkspaceIds;
impl IdKind for WorkspaceIds {
    const PREFIX: &'static str = pulsar_domain::ids::prefix::WORKSPACE;
    const LABEL: &'static str = "Workspace";
}

/// User ids (`usr_…`), as members.
#[derive(Debug)]
pub struct MemberIds;
impl IdKind for MemberIds {
    const PREFIX: &'static str = pulsar_domain::ids::prefix::USER;
    const LABEL: &'static str = "Member";
}

/// API key ids (`key_…`).
#[derive(Debug)]
pub struct ApiKeyIds;
impl IdKind for ApiKeyIds {
    const PREFIX: &'static str = pulsar_domain::ids::prefix::API_KEY;
    const LABEL: &'static str = "API key";
}

/// Webhook endpoint ids (`wh_…`).
#[derive(Debug)]
pub struct WebhookIds;
impl IdKind for WebhookIds {
    const PREFIX: &'static str = pulsar_domain::ids::prefix::WEBHOOK;
    const LABEL: &'static str = "Webhook";
}

/// Webhook delivery ids (`dlv_…`).
#[derive(Debug)]
pub struct DeliveryIds;
impl IdKind for DeliveryIds {
    const PREFIX: &'static str = pulsar_domain::ids::prefix::DELIVERY;
    const LABEL: &'static str = "Delivery";
}

/// The one `{id}` of a route's path, of kind `K`: 404 when it cannot be one.
#[derive(Debug)]
pub struct PathId<K>(pub String, pub PhantomData<K>);

impl<S: Send + Sync, K: IdKind> FromRequestParts<S> for PathId<K> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::not_found(K::LABEL))?;
        K::parse(&raw).map(|id| PathId(id, PhantomData))
    }
}

/// A route's two path ids (`/workspaces/{id}/members/{user_id}`), of kinds `A` and `B`.
#[derive(Debug)]
pub struct PathIds<A, B>(pub String, pub String, pub PhantomData<(A, B)>);

impl<S: Send + Sync, A: IdKind, B: IdKind> FromRequestParts<S> for PathIds<A, B> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| Error::not_found(A::LABEL))?;
        Ok(PathIds(A::parse(&a)?, B::parse(&b)?, PhantomData))
    }
}

/// JSON parsing that refuses what it would otherwise have to guess at.
pub mod strict {
    use std::cell::RefCell;
    use std::fmt;

    use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Number, Value};

    use crate::application::Error;

    /// More items than any array of this API may hold (its largest limit is 100): a
    /// longer one is refused while it is read, so its cost stops there.
    pub const MAX_ARRAY_ITEMS: usize = 1_000;

    /// Parses a request body into a [`Value`], refusing (400, with the place) what
    /// `serde_json` would accept silently: an object naming a member twice (which one
    /// counts is a guess), and a NUL character anywhere (PostgreSQL cannot store it).
    /// Malformed JSON, lone surrogates and nesting deeper than 128 are refused as well.
    /// An array longer than [`MAX_ARRAY_ITEMS`] is 422 on its member, found before the
    /// rest of it is parsed.
    pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
        let path = RefCell::new(Path::default());
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let parsed = StrictValue { path: &path }
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        let path = path.into_inner();
        if let Some(field) = path.too_long {
            let field = if field.is_empty() { "body" } else { &field };
            return Err(Error::invalid(
                field,
                format!("No more than {MAX_ARRAY_ITEMS} items are allowed here."),
            ));
        }
        parsed.map_err(|e| {
            let reason = e.to_string();
            let reason = reason
                .rsplit_once(" at line ")
                .map_or(reason.as_str(), |(reason, _)| reason);
            Error::BadRequest(format!(
                "The request body is not valid JSON: {reason} (line {}, column {}).",
                e.line(),
                e.column()
            ))
        })
    }

    /// Where the parser is (member names from the top), and the array found too long.
    #[derive(Default)]
    struct Path {
        members: Vec<String>,
        too_long: Option<String>,
    }

    struct StrictValue<'p> {
        path: &'p RefCell<Path>,
    }

    fn no_nul<E: de::Error>(value: &str) -> Result<(), E> {
        if value.contains('\0') {
            Err(E::custom("a string contains a NUL character (\\u0000)"))
        } else {
            Ok(())
        }
    }

    impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
        type Value = Value;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
            deserializer.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for StrictValue<'_> {
        type Value = Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }

        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::Number(v.into()))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
            // JSON has one number type: `806.0` and `8.06e2` are the integer 806, as JSON
            // Schema's `integer` says, wherever a float holds it exactly.
            const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
            if v.fract() == 0.0 && v.abs() <= EXACT {
                return Ok(Value::Number((v as i64).into()));
            }
            Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom("a number is out of range"))
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
            no_nul(v)?;
            Ok(Value::String(v.to_string()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
            no_nul(&v)?;
            Ok(Value::String(v))
        }

        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element_seed(StrictValue { path: self.path })? {
                if items.len() == MAX_ARRAY_ITEMS {
                    let mut path = self.path.borrow_mut();
                    path.too_long = Some(path.members.join("."));
                    return Err(de::Error::custom("an array is too long"));
                }
                items.push(item);
            }
            Ok(Value::Array(items))
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut members = Map::new();
            while let Some(name) = map.next_key::<String>()? {
                no_nul(&name)?;
                if members.contains_key(&name) {
                    return Err(de::Error::custom(format_args!(
                        "the member `{name}` is given more than once"
                    )));
                }
                self.path.borrow_mut().members.push(name.clone());
                let value = map.next_value_seed(StrictValue { path: self.path })?;
                self.path.borrow_mut().members.pop();
                members.insert(name, value);
            }
            Ok(Value::Object(members))
        }
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
        // JSON `null` is "no body" too, as the document's optional body says.
        match read_json(request, state).await? {
            serde_json::Value::Null => Ok(OptionalJson(T::default())),
            value => typed(value).map(OptionalJson),
        }
    }
}

/// Deserializes a nested object field from a JSON object only: serde would also build a
/// struct from an array, by position, which is a guess at what the client meant.
pub fn object_only<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
where
    T: DeserializeOwned,
    D: serde::Deserializer<'de>,
{
    use serde::de::Error as _;
    let value =
        <Option<serde_json::Map<String, serde_json::Value>> as serde::Deserialize>::deserialize(
            deserializer,
        )?;
    value
        .map(|map| serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom))
        .transpose()
}

/// Deserializes a field that distinguishes absent (`None`) from `null` (`Some(None)`).
pub fn double_option<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
