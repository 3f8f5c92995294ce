//! Pulsar's read side: the ordered, gap-free reader of the event log, durable
//! subscriptions with checkpoints, and the read models they keep.
//!
//! Every read model is fed by a [`subscription::Subscription`] that reads the `events`
//! table in `(transaction_id, global_position)` order, only past the oldest transaction
//! still running, and applies each batch plus its checkpoint in one transaction. That is
//! what makes the log order total, reproducible and never skipping (see
//! docs/architecture.md).
//!
//! Layout:
//! - [`position`]: [`Position`], a point in the log order.
//! - [`log`]: [`StoredEvent`] and the horizon query.
//! - [`public`]: stored events in their public form (the domain's event catalog).
//! - [`rebuild`]: replaying the log into fresh tables and swapping them in.
//! - [`subscription`]: the [`Projection`] trait, the batch loop, wake-ups, retries,
//!   status for `/readyz` and `/metrics`, and read-your-writes waiting.
//! - [`list`]: the list machinery (pagination, filters, sort, full text) over read models.
//! - [`audit`]: the audit log's Merkle tree (leaf per event in commit order, subtree roots).
//! - [`identity`]: users, workspaces and members read models.
//! - [`api_keys`]: the API keys read model.
//! - [`key_table`]: the in-memory key table every process verifies keys against.
//! - [`webhooks`]: the webhook endpoints read model, and the endpoint and delivery lists.
//! - [`workspace_data`]: projects, tasks, contacts, companies, deals and documents.
//! - [`usage`]: usage that arrives as events (recordings, pixel events) into `usage_minutes`.
//! - [`seo`]: each URL's latest SEO report and its issues.

pub mod api_keys;
pub mod audit;
pub mod identity;
pub mod key_table;
pub mod list;
pub mod log;
pub mod position;
pub mod public;
pub mod rebuild;
pub mod seo;
pub mod subscription;
pub mod usage;
pub mod webhooks;
pub mod workspace_data;

pub use log::StoredEvent;
pub use position::Position;
pub use subscription::{LocalProjection, Projection, ProjectionError, Subscriptions};
