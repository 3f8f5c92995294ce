//! Pulsar's API: the axum router, the policy layer, REST handlers, the OpenAPI document,
//! and the runtime that `pulsar serve` starts.
//!
//! Layout:
//! - [`config`]: every operator setting, typed, from `PULSAR_*` variables.
//! - [`app`]: the router ([`app::app`]), separate from `main` so tests drive it.
//! - [`middleware`], [`request_id`], [`extract`], [`error`]: the HTTP conventions of
//!   API.md section 3, built once: request ids, client IPs, the error envelope.
//! - [`edge`]: what paths and query strings may hold, checked once for every route
//!   against the OpenAPI document.
//! - [`auth`]: principals, workspace resolution and scope checks.
//! - [`idempotency`]: `Idempotency-Key` replay for every write.
//! - [`commands`]: executing commands with conflict retries and read-your-writes.
//! - [`routes`]: one module per resource.
//! - [`runtime`]: migrations, subscriptions and their shutdown, for `serve` and tests.

pub mod app;
pub mod auth;
pub mod claims;
pub mod clock;
pub mod commands;
pub mod config;
pub mod db;
pub mod edge;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod runtime;
pub mod state;
pub mod usage;

pub use app::app;
pub use config::Config;
pub use state::AppState;
