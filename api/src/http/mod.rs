//! HTTP conventions shared by every route (API.md section 3), built once: the request
//! context and error envelope, what paths, queries and bodies may hold, the
//! authentication layer, idempotency, and the OpenAPI document.
//!
//! Layout:
//! - [`middleware`], [`request_id`]: request ids, client IPs, the request span, metrics.
//! - [`error`]: every [`crate::application::Error`] as API.md's envelope and status.
//! - [`edge`]: paths and query strings checked against the OpenAPI document.
//! - [`extract`]: strict JSON bodies, typed path ids, query pairs.
//! - [`authenticate`]: credentials from headers, the policy chain, `Principal`/`Auth`.
//! - [`idempotency`]: `Idempotency-Key` replay for every write.
//! - [`openapi`]: the OpenAPI 3.1 document and what it declares.

pub mod authenticate;
pub mod edge;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod request_id;
