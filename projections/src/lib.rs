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
//! - [`subscription`]: the [`Projection`] trait, the batch loop, wake-ups, retries,
//!   status for `/readyz` and `/metrics`, and read-your-writes waiting.
//! - [`list`]: the list machinery (pagination, filters, sort, full text) over read models.
//! - [`identity`]: users, workspaces and members read models.

pub mod identity;
pub mod list;
pub mod log;
pub mod position;
pub mod subscription;

pub use log::StoredEvent;
pub use position::Position;
pub use subscription::{Projection, ProjectionError, Subscriptions};
