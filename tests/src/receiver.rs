//! A real HTTP receiver for webhook tests: listens on 127.0.0.1, port 0, records every
//! request (headers and raw body) and answers from a per-path script (200 when the
//! script is empty).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// A scripted answer: status and extra headers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub delay: Duration,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Inner {
    received: Mutex<Vec<Received>>,
    script: Mutex<HashMap<String, VecDeque<Answer>>>,
    /// Answer for a path once its script is empty.
    fallback: Mutex<HashMap<String, Answer>>,
}

/// The receiver; cheap to clone.
#[derive(Clone, Default)]
pub struct Receiver {
    inner: Arc<Inner>,
    pub base: String,
}

impl Receiver {
    /// Starts listening; `base` is `http://127.0.0.1:<port>`.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let address = listener.local_addr().expect("address");
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .route("/{*path}", axum::routing::post(receive))
            .with_state(Arc::clone(&inner));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            inner,
            base: format!("http://{address}"),
        }
    }

    /// The URL of `path` (e.g. `/hook`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers the next requests to `path` in order.
    pub fn script(&self, path: &str, answers: impl IntoIterator<Item = Answer>) {
        self.inner
            .script
            .lock()
            .expect("lock")
            .entry(path.to_string())
            .or_default()
            .extend(answers);
    }

    /// Answers every request to `path` with `answer` once its script is used up.
    pub fn always(&self, path: &str, answer: Answer) {
        self.inner
            .fallback
            .lock()
            .expect("lock")
            .insert(path.to_string(), answer);
    }

    /// Every request so far to `path`.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.inner
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got at least `count` requests (or panics after `timeout`).
    pub async fn wait_for(&self, path: &str, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received(path);
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path} got {} requests, wanted {count}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(inner): State<Arc<Inner>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{path}");
    inner.received.lock().expect("lock").push(Received {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    });
    let scripted = inner
        .script
        .lock()
        .expect("lock")
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let answer = scripted
        .or_else(|| inner.fallback.lock().expect("lock").get(&path).cloned())
        .unwrap_or_else(|| Answer::status(200));
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = (
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK),
        "ok",
    )
        .into_response();
    for (name, value) in answer.headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
