//! Pulsar's domain: the aggregates that decide what may happen, the events that record
//! what did, and the rules and formats both sides of the system share.
//!
//! Nothing here performs I/O. Aggregates are cqrs-es [`cqrs_es::Aggregate`]s: `handle`
//! validates a command against the current state and emits events, `apply` folds an
//! event into the state. Events are facts and are never edited once shipped: a changed
//! shape gets a new `event_version` and an upcaster.
//!
//! Layout:
//! - [`error`]: [`DomainError`] and per-field [`ValidationErrors`], the only error type
//!   aggregates return.
//! - [`metadata`]: who did it, from where, under which request: attached to every event.
//! - [`ids`]: prefixed, time-ordered identifiers.
//! - [`scopes`]: the scope catalog, wildcard matching and role → scope mapping.
//! - [`credentials`]: session-token format and hashing, password hashing.
//! - [`user`], [`workspace`]: the identity aggregates.
//! - [`api_key`], [`keys`]: the API key aggregate and the key format.
//! - [`catalog`]: the public event catalog: every internal event's public type and the
//!   payload folded from its stream (what webhooks, audit exports and MCP show).
//! - [`entitlements`]: the tier catalog ([`entitlements::Feature`], limits per tier).
//! - [`usage`]: usage recorded as events, and the threshold alerts (once per feature,
//!   threshold and UTC month).
//! - [`tracking`]: pixel pageviews and SEO reports.
//! - [`webhook`]: the webhook endpoint aggregate (where a workspace's events are sent).
//! - [`record`]: the generic aggregate behind all workspace data; [`workspace_data`]:
//!   its kinds (projects, tasks, contacts, companies, deals, documents).

pub mod api_key;
pub mod catalog;
pub mod credentials;
pub mod entitlements;
pub mod error;
pub mod ids;
pub mod keys;
pub mod merkle;
pub mod metadata;
pub mod record;
pub mod scopes;
pub mod tracking;
pub mod usage;
pub mod user;
pub mod validate;
pub mod webhook;
pub mod workspace;
pub mod workspace_data;

pub use error::{DomainError, ValidationErrors};
pub use metadata::{Actor, ActorType, EventMetadata, Tenanted};
