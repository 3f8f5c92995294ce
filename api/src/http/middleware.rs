//! The request layer every route goes through: request id, client IP, the request span,
//! metrics, and the guarantee that every error response carries the envelope.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use tracing::Instrument;

use crate::application::AppState;
use crate::application::{ClientIp, Error, RequestContext};
use crate::http::error::envelope;
use crate::http::request_id;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_PULSE_ID: HeaderName = HeaderName::from_static("x-pulse-id");

/// The client IP under the trusted-proxy rule: walk `X-Forwarded-For` from the right
/// (the entry our nearest proxy added) while the hop is a trusted proxy; the first
/// untrusted address is the client. Without trusted proxies the peer is the client.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .map(|hop| hop.parse::<IpAddr>().ok())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        client = *hop;
        if !is_trusted(hop) {
            break;
        }
    }
    client
}

/// The outermost middleware.
pub async fn request_context(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Read the id headers in a block: a closure borrowing the request (whose body is
    // not `Sync`) must not live across an await.
    let (request_id, pulse_id) = {
        let header = |name: &HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| request_id::acceptable(v))
                .map(str::to_string)
        };
        let pulse_id = header(&X_PULSE_ID);
        let request_id = header(&X_REQUEST_ID)
            .or_else(|| pulse_id.clone())
            .unwrap_or_else(request_id::generate);
        (request_id, pulse_id)
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let ip = client_ip(peer, request.headers(), &state.config.trusted_proxies);
    let user_agent = request
        .headers()
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(512)
        .collect();
    let method = request.method().clone();
    request
        .extensions_mut()
        .insert(crate::http::extract::BodyLimit(state.config.max_body_bytes));
    request.extensions_mut().insert(RequestContext {
        request_id: request_id.clone(),
        client_ip: ClientIp(ip),
        user_agent,
    });
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        path = %request.uri().path(),
        client_ip = %ip,
        status = tracing::field::Empty,
    );
    let mut response = request_id::scope(
        request_id.clone(),
        async move {
            let response = next.run(request).await;
            normalize_error(response, state.config.max_body_bytes)
        }
        .instrument(span.clone()),
    )
    .await;
    let status = response.status();
    span.record("status", status.as_u16());
    let elapsed = started.elapsed();
    let route = response
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str());
    state
        .metrics
        .observe_request(method.as_str(), route, status.as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID, value);
    }
    if let Some(value) = pulse_id.and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(X_PULSE_ID, value);
    }
    response
}

/// Error responses made outside our handlers (the router's 405, a layer's rejection)
/// get the envelope too.
fn normalize_error(response: Response, body_limit: usize) -> Response {
    let status = response.status();
    let deliberate_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // Our own JSON answers (the error envelope, /readyz's 503 report) pass untouched;
    // what is rewritten are the bare or plain-text errors of the router and of layers.
    if !(status.is_client_error() || status.is_server_error()) || deliberate_json {
        return response;
    }
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => Error::MethodNotAllowed,
        StatusCode::NOT_FOUND => Error::NotFound("The requested resource was not found.".into()),
        StatusCode::PAYLOAD_TOO_LARGE => Error::PayloadTooLarge { limit: body_limit },
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Error::UnsupportedMediaType,
        status if status.is_server_error() => Error::internal(format!("{status} from a layer")),
        _ => {
            let (parts, _) = response.into_parts();
            let body = envelope("bad_request", "The request could not be understood.", None);
            let mut rebuilt = (parts.status, axum::Json(body)).into_response();
            for (name, value) in parts.headers.iter() {
                if name != axum::http::header::CONTENT_TYPE
                    && name != axum::http::header::CONTENT_LENGTH
                {
                    rebuilt.headers_mut().insert(name.clone(), value.clone());
                }
            }
            return rebuilt;
        }
    };
    let (parts, _) = response.into_parts();
    let mut rebuilt = error.into_response();
    for (name, value) in parts.headers.iter() {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rebuilt
}

/// The fallback for paths no route matches.
pub async fn not_found() -> Error {
    Error::NotFound("The requested resource was not found.".into())
}

/// An empty body, for 204s.
pub fn no_content() -> Response {
    (StatusCode::NO_CONTENT, Body::empty()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxy_rule() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.2.3.4, 5.6.7.8, 10.0.0.2"),
        );
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        // Spoofed leftmost entries are ignored: the first untrusted hop from the right wins.
        assert_eq!(
            client_ip(proxy, &headers, &trusted),
            "5.6.7.8".parse::<IpAddr>().expect("ip")
        );
        // An untrusted peer's header is not believed.
        let stranger: IpAddr = "9.9.9.9".parse().expect("ip");
        assert_eq!(client_ip(stranger, &headers, &trusted), stranger);
        // Garbage in the header: fall back to the peer.
        headers.insert("x-forwarded-for", HeaderValue::from_static("nonsense"));
        assert_eq!(client_ip(proxy, &headers, &trusted), proxy);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn ip(n: u8) -> IpAddr {
            IpAddr::from([10, 0, 0, n])
        }

        proptest! {
            /// Whatever the header says: an untrusted peer is the client; otherwise the
            /// client is a hop of the chain (or the peer) such that every hop to its
            /// right is a trusted proxy, and it is untrusted unless the whole chain is.
            #[test]
            fn the_client_is_the_first_untrusted_hop_from_the_right(
                chain in proptest::collection::vec(0u8..8, 0..6),
                trusted_set in proptest::collection::btree_set(0u8..8, 0..8),
                peer in 0u8..8,
                garbage in proptest::bool::weighted(0.2),
            ) {
                let trusted: Vec<IpNet> = trusted_set.iter().map(|n| IpNet::from(ip(*n))).collect();
                let is_trusted = |a: &IpAddr| trusted.iter().any(|t| t.contains(a));
                let mut headers = HeaderMap::new();
                let mut text: Vec<String> = chain.iter().map(|n| ip(*n).to_string()).collect();
                if garbage {
                    text.push("not-an-ip".into());
                }
                if let Ok(value) = HeaderValue::from_str(&text.join(", ")) {
                    headers.insert("x-forwarded-for", value);
                }
                let client = client_ip(ip(peer), &headers, &trusted);
                if !is_trusted(&ip(peer)) || garbage {
                    prop_assert_eq!(client, ip(peer));
                    return Ok(());
                }
                let hops: Vec<IpAddr> = chain.iter().map(|n| ip(*n)).collect();
                match hops.iter().rposition(|hop| !is_trusted(hop)) {
                    Some(position) => prop_assert_eq!(client, hops[position]),
                    None => prop_assert_eq!(client, hops.first().copied().unwrap_or(ip(peer))),
                }
            }
        }
    }
}
