//! The application layer: every use case, once, for every adapter.
//!
//! A use case takes a typed caller ([`Principal`] or [`Auth`]) and typed input and
//! returns typed output, a [`pulsar_projections::list::Page`], or an [`Error`]; it knows
//! nothing of axum, URIs, JSON rendering or JSON-RPC. The REST adapter
//! ([`crate::rest`]) and the MCP adapter call the same functions and only translate.
//! Authority is checked here and in the aggregates below, so no adapter can forget it.
//!
//! Layout:
//! - [`error`]: [`Error`], one code per way a use case fails.
//! - [`context`]: [`RequestContext`], [`Principal`], [`Auth`] (a principal acting in
//!   one workspace, with its scopes).
//! - [`authentication`]: API.md's policy chain over a credential.
//! - [`commands`]: running commands with conflict retries and read-your-writes, over
//!   [`event_store`] (postgres-es's tables in fewer round trips).
//! - [`rate_limit`], [`usage`]: per-principal limits and call counting.
//! - [`audit`], [`audit_export`]: checkpoints and proofs; the operator's export and
//!   verification.
//! - [`as_of`]: resources as they stood at an instant, folded from their events.
//! - [`webhooks`]: endpoints, secrets, tests, deliveries, retry, recover and replay.
//! - [`limits`]: tier limits that hold under concurrent creations, across nodes.
//! - [`claims`]: uniqueness the write side cannot check by itself (slugs).
//! - [`state`]: [`AppState`], the handles every use case shares (pool, commands,
//!   subscriptions, key table, limiter, clock, config).

pub mod alerts;
pub mod api_keys;
pub mod as_of;
pub mod audit;
pub mod audit_export;
pub mod authentication;
pub mod claims;
pub mod commands;
pub mod context;
pub mod entitlements;
pub mod error;
pub mod event_store;
pub mod identity;
pub mod limits;
pub mod mcp_servers;
pub mod pixel;
pub mod rate_limit;
pub mod records;
pub mod resources;
pub mod seo;
pub mod state;
pub mod tools;
pub mod usage;
pub mod webhooks;
pub mod workspaces;

pub use context::{Auth, ClientIp, Principal, PrincipalKind, RequestContext, Session};
pub use error::{Error, Result};
pub use state::AppState;
