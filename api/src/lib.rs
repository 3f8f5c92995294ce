//! Pulsar's API: the application layer (use cases), the adapters over it (REST, with
//! its HTTP conventions and OpenAPI document), and the runtime that `pulsar serve` starts.
//!
//! Layers, and the direction of calls (docs/architecture.md):
//!
//! ```text
//! rest (axum handlers)  ──┐
//! mcp (JSON-RPC tools)  ──┼──> application (use cases) ──> domain (aggregates, rules)
//! cli (pulsar …)        ──┘            │                 └─> projections (read models, log)
//!          http (middleware, edge, authentication layer) wraps the REST routes
//! ```
//!
//! Layout:
//! - [`application`]: every use case, typed in and out, no HTTP types; authority checks.
//! - [`http`]: request context, the error envelope, input checks at the edge, strict
//!   JSON, the authentication layer, idempotency, the OpenAPI document.
//! - [`rest`]: one module per resource: extract, call the use case, render.
//! - [`router`]: the router ([`app`]), separate from `main` so tests drive it.
//! - [`config`], [`runtime`], [`db`], [`clock`], [`metrics`]: settings, migrations and
//!   background tasks, the clock tests move, counters.

pub mod application;
pub mod clock;
pub mod config;
pub mod db;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod rest;
pub mod router;
pub mod runtime;

pub use application::AppState;
pub use config::Config;
pub use router::app;
