//! Pulsar's webhook dispatcher.
//!
//! - [`config`]: its typed settings (`PULSAR_WEBHOOK_*`).
//! - [`guard`]: the SSRF guard: which URLs may be registered and which addresses may be
//!   connected to, checked after DNS resolution.
//! - [`secrets`]: signing secrets, sealed at rest with an AEAD.
//! - [`signature`]: the Stripe-style and Standard Webhooks signature headers.
//! - [`fanout`]: the log subscriber that inserts one delivery per (event, endpoint).
//! - [`worker`]: claiming, sending, retrying and recording deliveries.
//! - [`send`]: one signed request and its outcome.
//! - [`queue`]: manual retry, recover and replay.
pub mod config;
pub mod fanout;
pub mod guard;
pub mod queue;
pub mod secrets;
pub mod send;
pub mod signature;
pub mod worker;

pub use config::DispatcherConfig;
pub use worker::{Dispatcher, EndpointControl};
