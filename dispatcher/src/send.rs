//! One signed request to one endpoint, and what came of it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::guard::Guard;
use crate::signature;

/// What is sent: the message's exact body, signed with every valid secret.
#[derive(Debug)]
pub struct Request<'a> {
    pub url: &'a str,
    /// The event id: `webhook-id`, the same on every delivery of the event.
    pub message_id: &'a str,
    pub delivery_id: &'a str,
    pub event_type: &'a str,
    pub body: &'a str,
    /// Current secret first, then those still in a rotation's grace period.
    pub secrets: &'a [String],
}

/// What one attempt gave.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub attempted_at: DateTime<Utc>,
    pub status_code: Option<u16>,
    pub duration_ms: i32,
    /// Why it failed without a response (never holding the URL or a secret).
    pub error: Option<String>,
    /// The first bytes of the response body, lossily decoded.
    pub response_body: Option<String>,
    /// The receiver's `Retry-After`, when it sent one.
    pub retry_after: Option<Duration>,
}

impl Outcome {
    /// Any 2xx is a success.
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }

    /// The receiver says the endpoint is gone for good.
    pub fn gone(&self) -> bool {
        self.status_code == Some(410)
    }

    /// A failure that never reached a receiver.
    pub fn failed(attempted_at: DateTime<Utc>, error: impl Into<String>) -> Self {
        Self {
            attempted_at,
            status_code: None,
            duration_ms: 0,
            error: Some(error.into()),
            response_body: None,
            retry_after: None,
        }
    }

    /// Short text for `last_error`.
    pub fn summary(&self) -> Option<String> {
        match (&self.error, self.status_code) {
            (Some(error), _) => Some(error.clone()),
            (None, Some(code)) if !self.succeeded() => Some(format!("HTTP {code}")),
            _ => None,
        }
    }
}

fn header(name: &'static str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    Some((
        HeaderName::from_static(name),
        HeaderValue::from_str(value).ok()?,
    ))
}

/// Signs and sends `request`, keeping at most `body_limit` bytes of the response.
pub async fn send(
    client: &reqwest::Client,
    guard: &Guard,
    request: &Request<'_>,
    body_limit: usize,
) -> Outcome {
    let attempted_at = Utc::now();
    let url = match url::Url::parse(request.url) {
        Ok(url) => url,
        Err(_) => return Outcome::failed(attempted_at, "the endpoint URL is not valid"),
    };
    // Literal addresses never reach the resolver: check them here, every attempt.
    if let Err(refusal) = guard.check_target(&url) {
        return Outcome::failed(attempted_at, refusal.to_string());
    }
    let timestamp = attempted_at.timestamp();
    let secrets: Vec<&str> = request.secrets.iter().map(String::as_str).collect();
    let signed = signature::sign(
        &secrets,
        request.message_id,
        timestamp,
        request.body.as_bytes(),
    );
    let timestamp = timestamp.to_string();
    let mut headers = HeaderMap::with_capacity(9);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in [
        ("x-pulsar-event", request.event_type),
        ("x-pulsar-delivery-id", request.delivery_id),
        ("x-pulsar-signature-timestamp", &timestamp),
        ("x-pulsar-signature", &signed.pulsar),
        ("webhook-id", request.message_id),
        ("webhook-timestamp", &timestamp),
        ("webhook-signature", &signed.standard),
    ] {
        if let Some((name, value)) = header(name, value) {
            headers.insert(name, value);
        }
    }
    let started = Instant::now();
    let sent = client
        .post(url)
        .headers(headers)
        .body(request.body.to_string())
        .send()
        .await;
    let elapsed =
        |started: Instant| i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
    let mut response = match sent {
        Ok(response) => response,
        Err(error) => {
            let mut outcome = Outcome::failed(attempted_at, describe(&error));
            outcome.duration_ms = elapsed(started);
            return outcome;
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, attempted_at));
    let mut body = Vec::new();
    let mut error = None;
    while body.len() < body_limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = body_limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(describe(&e));
                break;
            }
        }
    }
    Outcome {
        attempted_at,
        status_code: Some(status),
        duration_ms: elapsed(started),
        // A status arrived: a body cut short does not make a 2xx a failure.
        error: error.filter(|_| !(200..300).contains(&status)),
        response_body: Some(String::from_utf8_lossy(&body).into_owned()),
        retry_after,
    }
}

/// A transport error as an attempt records it: its kind and causes, without the URL
/// (which may carry a receiver's token).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return "timed out".into();
    }
    let mut text = if error.is_connect() {
        "could not connect".to_string()
    } else if error.is_body() || error.is_decode() {
        "the response could not be read".to_string()
    } else {
        "the request failed".to_string()
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `Retry-After` as delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("date")
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:30 GMT", now),
            None
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
