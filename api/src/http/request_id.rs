//! The request id: taken from `X-Request-ID` when the client sent a sane one, else
//! generated; available to every log line (via the request span) and to error bodies
//! (via a task-local), and echoed on every response.

use rand::distributions::{Alphanumeric, DistString};

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `f` with `id` as the current request id.
pub async fn scope<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// A new id: `req_` + 24 letters and digits.
pub fn generate() -> String {
    format!(
        "req_{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 24)
    )
}

/// Whether a client-supplied id may be echoed (and logged) as is.
pub fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}
