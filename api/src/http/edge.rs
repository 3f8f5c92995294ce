//! Input checked at the edge, once, for every route: what the path and the query string
//! may hold before any handler, extractor or SQL sees them.
//!
//! - Every percent-decoded path segment and query name and value must be UTF-8 without
//!   NUL: PostgreSQL can store neither, and a handler must never be the one to find out
//!   (400 `bad_request`).
//! - A route accepts exactly the query parameters its OpenAPI operation declares (which
//!   include the scoping parameter `workspaceId` on every authenticated operation, see
//!   [`crate::http::openapi`]); anything else, or one given twice, is 400. Routes outside the
//!   document (`/healthz`, `/docs`, ...) take none. Because the rules are read from the
//!   document, the contract states what the edge enforces, and a new route is covered
//!   the moment it is documented.
//!
//! Values are parsed by the handlers that understand them (list queries, dates); this
//! layer only decides which names may appear at all.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::OpenApi;

use crate::application::Error;

/// Query parameters per route, from the OpenAPI document.
#[derive(Debug, Default)]
pub struct QueryRules {
    by_route: HashMap<(Method, String), Vec<String>>,
}

impl QueryRules {
    /// The rules of every operation in `openapi`, whose paths are served under `base`.
    pub fn from_openapi(openapi: &OpenApi, base: &str) -> Self {
        let mut by_route = HashMap::new();
        for (path, item) in &openapi.paths.paths {
            let operations = [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let names = operation
                    .parameters
                    .iter()
                    .flatten()
                    .filter(|p| matches!(p.parameter_in, ParameterIn::Query))
                    .map(|p| p.name.clone())
                    .collect();
                by_route.insert((method, format!("{base}{path}")), names);
            }
        }
        Self { by_route }
    }

    /// The parameters `method` on `route` accepts; `None` when the route exists for
    /// other methods only (the router answers 405, which must not be preempted).
    fn allowed(&self, method: &Method, route: &str) -> Option<&[String]> {
        // HEAD is answered by the GET route.
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        match self.by_route.get(&(method.clone(), route.to_string())) {
            Some(names) => Some(names),
            None if self.by_route.keys().any(|(_, r)| r == route) => None,
            None => Some(&[]),
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space in query components); a `%` not followed
/// by two hex digits stays as it is, as browsers and `form_urlencoded` treat it.
fn percent_decode(raw: &str, plus_is_space: bool) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some((hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?) as u8))
            .flatten();
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (None, b'+') if plus_is_space => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    out
}

/// The decoded text, when it is UTF-8 without NUL.
fn storable(raw: &str, plus_is_space: bool) -> Option<String> {
    let text = String::from_utf8(percent_decode(raw, plus_is_space)).ok()?;
    (!text.contains('\0')).then_some(text)
}

/// Checks a request's path and query against the rules (see the module docs).
pub fn check(
    rules: &QueryRules,
    method: &Method,
    route: &str,
    path: &str,
    query: Option<&str>,
) -> Result<(), Error> {
    if path
        .split('/')
        .any(|segment| storable(segment, false).is_none())
    {
        return Err(Error::BadRequest(
            "The path contains a NUL byte or bytes that are not UTF-8.".into(),
        ));
    }
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(());
    };
    let Some(allowed) = rules.allowed(method, route) else {
        return Ok(());
    };
    let mut seen = HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = storable(name, true).ok_or_else(|| {
            Error::BadRequest(
                "A query parameter name contains a NUL byte or bytes that are not UTF-8.".into(),
            )
        })?;
        if storable(value, true).is_none() {
            return Err(Error::BadRequest(format!(
                "The query parameter `{name}` contains a NUL byte or bytes that are not UTF-8."
            )));
        }
        if !allowed.contains(&name) {
            return Err(Error::BadRequest(if allowed.is_empty() {
                format!("Unknown query parameter `{name}`; this route takes none.")
            } else {
                format!(
                    "Unknown query parameter `{name}`; this route takes: {}.",
                    allowed.join(", ")
                )
            }));
        }
        if !seen.insert(name.clone()) {
            return Err(Error::BadRequest(format!(
                "`{name}` is given more than once."
            )));
        }
    }
    Ok(())
}

/// The route layer: checks the input (above), then runs the route and tags the
/// response with the matched route for the outer layer's metrics (which runs before
/// routing, so it cannot see it on the request).
pub async fn guard(State(rules): State<Arc<QueryRules>>, request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("", |m| m.as_str());
    if let Err(error) = check(
        &rules,
        request.method(),
        route,
        request.uri().path(),
        request.uri().query(),
    ) {
        let mut response = error.into_response();
        if let Some(matched) = matched {
            response.extensions_mut().insert(matched);
        }
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(matched);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_refuses_what_cannot_be_stored() {
        assert_eq!(storable("a%20b+c", true).as_deref(), Some("a b c"));
        assert_eq!(storable("a+b", false).as_deref(), Some("a+b"));
        assert_eq!(storable("100%", true).as_deref(), Some("100%"));
        assert_eq!(storable("%zz", true).as_deref(), Some("%zz"));
        assert_eq!(storable("%C3%A9", true).as_deref(), Some("é"));
        assert_eq!(storable("%00", true), None);
        assert_eq!(storable("a%00b", false), None);
        assert_eq!(storable("%FF", true), None, "not UTF-8");
        assert_eq!(
            storable("%ED%A0%80", true),
            None,
            "an encoded lone surrogate"
        );
    }

    #[test]
    fn only_declared_parameters_once_each() {
        let mut rules = QueryRules::default();
        rules.by_route.insert(
            (Method::GET, "/api/v1/things".into()),
            vec!["page".into(), "workspaceId".into()],
        );
        let run = |method: Method, route: &str, query: &str| {
            check(&rules, &method, route, route, Some(query)).map_err(|e| e.to_string())
        };
        assert!(run(Method::GET, "/api/v1/things", "page=2&workspaceId=ws_1").is_ok());
        assert!(run(Method::HEAD, "/api/v1/things", "page=2").is_ok());
        assert!(run(Method::GET, "/api/v1/things", "").is_ok());
        let unknown = run(Method::GET, "/api/v1/things", "page=1&as_of=x").expect_err("unknown");
        assert!(unknown.contains("as_of"), "{unknown}");
        assert!(run(Method::GET, "/api/v1/things", "page=1&page=2").is_err());
        assert!(
            run(Method::POST, "/api/v1/things", "page=1").is_ok(),
            "another method of a documented route is the router's 405"
        );
        assert!(
            run(Method::GET, "/healthz", "x=1").is_err(),
            "undocumented routes take none"
        );
        assert!(run(Method::GET, "/api/v1/things", "page=%00").is_err());
        assert!(run(Method::GET, "/api/v1/things", "pa%00ge=1").is_err());
        assert!(check(
            &rules,
            &Method::GET,
            "/api/v1/things/{id}",
            "/api/v1/things/%00",
            None
        )
        .is_err());
        assert!(check(
            &rules,
            &Method::GET,
            "/api/v1/things/{id}",
            "/api/v1/things/a%20b",
            None
        )
        .is_ok());
    }
}
