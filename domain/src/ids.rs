//! Identifiers: a short type prefix and a UUIDv7, so ids sort by creation time and say
//! what they name (`ws_…`, `usr_…`).
//!
//! Every id this system issues has one shape, `<prefix>_<32 lowercase hex digits>`, so a
//! string that does not have it cannot name anything: the edge answers it "not found"
//! without asking the database.

/// Digits after the prefix and its underscore.
const DIGITS: usize = 32;

/// A new identifier with the given prefix, e.g. `new_id("ws")` → `ws_0193…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Whether `value` has the shape of an id issued with `prefix`.
pub fn is_id(prefix: &str, value: &str) -> bool {
    value
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|digits| {
            digits.len() == DIGITS
                && digits
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Prefixes in use, one per aggregate type.
pub mod prefix {
    pub const USER: &str = "usr";
    pub const WORKSPACE: &str = "ws";
    pub const API_KEY: &str = "key";
    pub const PIXEL: &str = "px";
    pub const REQUEST: &str = "req";
    pub const WEBHOOK: &str = "wh";
    pub const DELIVERY: &str = "dlv";
    /// A usage recording.
    pub const USAGE: &str = "usg";
    /// One tracked pixel event.
    pub const PIXEL_EVENT: &str = "pxe";
    pub const SEO_REPORT: &str = "seo";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_have_the_shape_and_others_do_not() {
        let id = new_id(prefix::WORKSPACE);
        assert!(is_id(prefix::WORKSPACE, &id));
        assert!(!is_id(prefix::USER, &id), "another kind's prefix");
        for bad in [
            "",
            "ws_",
            "ws",
            "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8", // one digit short
            "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f0", // one too many
            "ws_0193A5F7C6A87F4C9D5E3B2A1C0D9E8F", // upper case
            "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8\0",
            "ws-0193a5f7c6a87f4c9d5e3b2a1c0d9e8f",
            "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9é",
        ] {
            assert!(!is_id(prefix::WORKSPACE, bad), "{bad:?}");
        }
    }
}
