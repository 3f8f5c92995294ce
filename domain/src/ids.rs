//! Identifiers: a short type prefix and a UUIDv7, so ids sort by creation time and say
//! what they name (`ws_…`, `usr_…`).

/// A new identifier with the given prefix, e.g. `new_id("ws")` → `ws_0193…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Prefixes in use, one per aggregate type.
pub mod prefix {
    pub const USER: &str = "usr";
    pub const WORKSPACE: &str = "ws";
    pub const PIXEL: &str = "px";
    pub const REQUEST: &str = "req";
}
