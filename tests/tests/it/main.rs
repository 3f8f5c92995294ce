//! End-to-end tests against real PostgreSQL. One test binary, so one throwaway cluster
//! per run; each test gets its own database.

mod api_keys;
mod application;
mod as_of;
mod audit;
mod binary;
mod catalog;
mod edge;
mod entitlements;
mod events;
mod hostile;
mod http;
mod idempotency;
mod identity;
mod lifecycle;
mod mcp;
mod rebuild;
mod subscriptions;
mod tracking;
mod usage;
mod webhooks;
mod workspace_data;
