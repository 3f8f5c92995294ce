//! The two signatures every delivery carries, so a receiver can verify it with whichever
//! it already knows: Stripe's scheme, or [Standard Webhooks](https://www.standardwebhooks.com).
//!
//! ```text
//! x-pulsar-signature-timestamp: <t>
//! x-pulsar-signature: t=<t>,v1=<hex HMAC-SHA256(key = "whsec_...", msg = "<t>.<raw body>")>
//! webhook-id: <message id>
//! webhook-timestamp: <t>
//! webhook-signature: v1,<base64 HMAC-SHA256(key = base64-decoded part after "whsec_",
//!                                           msg = "<webhook-id>.<t>.<raw body>")>
//! ```
//!
//! `<t>` is the Unix time of the attempt in seconds, and the body is the exact bytes sent.
//! A receiver recomputes the HMAC over what it received, compares in constant time, and
//! refuses a timestamp too far from its clock (replays); [`verify_pulsar`] and
//! [`verify_standard`] do exactly that.
//!
//! **One secret, two keys.** Both schemes are keyed by the one `whsec_` secret the
//! endpoint was given, but each follows its own convention for turning it into key bytes:
//! Stripe's verifiers use the secret string as it is (all its bytes, prefix included),
//! while Standard Webhooks libraries strip `whsec_` and base64-decode the rest. Signing
//! each way lets receivers use the stock verifier of either ecosystem unchanged.
//!
//! **Rotation.** After a rotation the previous secret stays valid for a grace period,
//! during which each header carries one signature per valid secret, the current one
//! first: `t=<t>,v1=<hex current>,v1=<hex previous>` (how Stripe lists several
//! signatures; its verifier accepts the header if any `v1` matches) and
//! `v1,<b64 current> v1,<b64 previous>` (space-separated, as Standard Webhooks specifies).
//! A receiver holding either secret keeps verifying while it switches over.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::PREFIX;

/// Header with the Unix timestamp of the Stripe-style signature.
pub const PULSAR_TIMESTAMP_HEADER: &str = "x-pulsar-signature-timestamp";
/// Header with the Stripe-style signature (`t=<t>,v1=<hex>`).
pub const PULSAR_SIGNATURE_HEADER: &str = "x-pulsar-signature";
/// Standard Webhooks: the message id, stable across retries.
pub const WEBHOOK_ID_HEADER: &str = "webhook-id";
/// Standard Webhooks: the Unix timestamp.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// Standard Webhooks: the signatures (`v1,<base64>`, space-separated).
pub const WEBHOOK_SIGNATURE_HEADER: &str = "webhook-signature";

type HmacSha256 = Hmac<Sha256>;

/// The signature header values of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signatures {
    /// Unix seconds: `x-pulsar-signature-timestamp` and `webhook-timestamp`.
    pub timestamp: i64,
    /// `x-pulsar-signature`: `t=<t>,v1=<hex>[,v1=<hex>...]`.
    pub pulsar: String,
    /// `webhook-signature`: `v1,<base64>[ v1,<base64>...]`.
    pub standard: String,
}

/// Signs one attempt with every valid secret, the current one first (more than one only
/// during a rotation's grace period). With no secret, `pulsar` is just `t=<t>` and
/// `standard` is empty.
///
/// For the Standard Webhooks key, a secret whose part after `whsec_` is not valid
/// standard base64 (or that lacks the prefix) is used as the raw bytes of that part
/// rather than panicking. Secrets are validated when they are created
/// ([`crate::secrets::validate`]), so this does not happen in practice.
pub fn sign(secrets: &[&str], message_id: &str, timestamp: i64, body: &[u8]) -> Signatures {
    let t = timestamp.to_string();
    let mut pulsar = format!("t={t}");
    let mut standard = String::new();
    for secret in secrets {
        pulsar.push_str(",v1=");
        pulsar.push_str(&hex::encode(
            pulsar_mac(secret, &t, body).finalize().into_bytes(),
        ));

        if !standard.is_empty() {
            standard.push(' ');
        }
        standard.push_str("v1,");
        let mac = standard_mac(secret, message_id, &t, body);
        standard.push_str(&STANDARD.encode(mac.finalize().into_bytes()));
    }
    Signatures {
        timestamp,
        pulsar,
        standard,
    }
}

/// Verifies an `x-pulsar-signature` header (`t=<t>,v1=<hex>[,v1=<hex>...]`) against the
/// raw body and one secret, as a receiver would: the header must have a `t` within
/// `tolerance_secs` of `now` (either way), and any one `v1` must match (compared in
/// constant time). Unknown fields (e.g. a future `v2`) are ignored.
pub fn verify_pulsar(
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" if timestamp.is_none() => timestamp = Some(value),
            "v1" => candidates.push(value),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return false;
    };
    let Ok(t_value) = t.parse::<i64>() else {
        return false;
    };
    if !within_tolerance(t_value, now, tolerance_secs) {
        return false;
    }
    let expected = pulsar_mac(secret, t, body);
    candidates.into_iter().any(|candidate| {
        hex::decode(candidate).is_ok_and(|bytes| expected.clone().verify_slice(&bytes).is_ok())
    })
}

/// Verifies Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
/// `webhook-signature`) against the raw body and one secret: the timestamp must be within
/// `tolerance_secs` of `now` (either way), and any one space-separated `v1,<base64>` entry
/// must match (compared in constant time). Entries of other versions are ignored.
pub fn verify_standard(
    message_id: &str,
    timestamp: &str,
    header: &str,
    body: &[u8],
    secret: &str,
    now: i64,
    tolerance_secs: i64,
) -> bool {
    let Ok(t_value) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    if !within_tolerance(t_value, now, tolerance_secs) {
        return false;
    }
    let expected = standard_mac(secret, message_id, timestamp.trim(), body);
    header.split_whitespace().any(|entry| {
        entry.split_once(',').is_some_and(|(version, signature)| {
            version == "v1"
                && STANDARD
                    .decode(signature)
                    .is_ok_and(|bytes| expected.clone().verify_slice(&bytes).is_ok())
        })
    })
}

/// `|now - t| <= tolerance`, without overflow; a negative tolerance accepts nothing.
fn within_tolerance(t: i64, now: i64, tolerance_secs: i64) -> bool {
    u64::try_from(tolerance_secs).is_ok_and(|tolerance| {
        (i128::from(now) - i128::from(t)).unsigned_abs() <= u128::from(tolerance)
    })
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC hashes long keys and pads short ones: every length is valid.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

/// Stripe-style: key = the whole secret string, message = `<t>.<body>`.
fn pulsar_mac(secret: &str, t: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = new_mac(secret.as_bytes());
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Standard Webhooks: key = the base64-decoded part after `whsec_` (see [`sign`] for the
/// fallback), message = `<message id>.<t>.<body>`.
fn standard_mac(secret: &str, message_id: &str, t: &str, body: &[u8]) -> HmacSha256 {
    let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
    let mut mac = match STANDARD.decode(encoded) {
        Ok(key) => new_mac(&key),
        Err(_) => new_mac(encoded.as_bytes()),
    };
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `whsec_` + base64 of the bytes 0..32.
    const SECRET_A: &str = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    /// The Standard Webhooks documentation's example secret (24 bytes).
    const SECRET_B: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const BODY: &[u8] = br#"{"type":"order.created","data":{"id":"ord_1"}}"#;
    const MSG_ID: &str = "msg_2Xf8kQ";
    const T: i64 = 1_700_000_000;

    // Expected values computed independently with Python's hmac/hashlib/base64:
    //   hmac.new(s.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    //   base64.b64encode(hmac.new(base64.b64decode(s[6:]),
    //                             f"{mid}.{t}.".encode() + body, hashlib.sha256).digest())
    const PULSAR_A: &str = "4095389f9f524f01f1b113136cb9fb1680ab889b2a0deb77aed7cc9ab49081f5";
    const STANDARD_A: &str = "LGjirnXhKwEw4xXLj69cN3mUAd1t/C4PpvW+wP0/W70=";
    const PULSAR_B: &str = "a9cf9459dbcf39142b4a45f73771944159f4d1fdc148c175544e103f08719689";
    const STANDARD_B: &str = "tNcL4Aet/HxxhX46cKL16IjgqyixpXGx66f2emi4YVo=";
    /// Key = the raw bytes `not*base64` (the fallback for an invalid secret).
    const STANDARD_FALLBACK: &str = "LKY9PeknsCNO0CcDXgGzPLzwZMafA6Uj3nNjgd3ul1k=";

    #[test]
    fn known_answers_one_secret() {
        let s = sign(&[SECRET_A], MSG_ID, T, BODY);
        assert_eq!(s.timestamp, T);
        assert_eq!(s.pulsar, format!("t={T},v1={PULSAR_A}"));
        assert_eq!(s.standard, format!("v1,{STANDARD_A}"));

        let s = sign(&[SECRET_B], MSG_ID, T, BODY);
        assert_eq!(s.pulsar, format!("t={T},v1={PULSAR_B}"));
        assert_eq!(s.standard, format!("v1,{STANDARD_B}"));
    }

    #[test]
    fn known_answers_two_secrets_current_first() {
        let s = sign(&[SECRET_A, SECRET_B], MSG_ID, T, BODY);
        assert_eq!(s.pulsar, format!("t={T},v1={PULSAR_A},v1={PULSAR_B}"));
        assert_eq!(s.standard, format!("v1,{STANDARD_A} v1,{STANDARD_B}"));
    }

    #[test]
    fn invalid_base64_secret_falls_back_to_raw_bytes() {
        let s = sign(&["whsec_not*base64"], MSG_ID, T, BODY);
        assert_eq!(s.standard, format!("v1,{STANDARD_FALLBACK}"));
        assert!(verify_standard(
            MSG_ID,
            &T.to_string(),
            &s.standard,
            BODY,
            "whsec_not*base64",
            T,
            300
        ));
    }

    #[test]
    fn no_secret_signs_nothing() {
        let s = sign(&[], MSG_ID, T, BODY);
        assert_eq!(s.pulsar, format!("t={T}"));
        assert_eq!(s.standard, "");
        assert!(!verify_pulsar(&s.pulsar, BODY, SECRET_A, T, 300));
        assert!(!verify_standard(
            MSG_ID,
            &T.to_string(),
            &s.standard,
            BODY,
            SECRET_A,
            T,
            300
        ));
    }

    #[test]
    fn round_trip_both_schemes() {
        let secret = crate::secrets::generate();
        let s = sign(&[&secret], "msg_round", T, b"hello");
        assert!(verify_pulsar(&s.pulsar, b"hello", &secret, T + 10, 300));
        assert!(verify_standard(
            "msg_round",
            &s.timestamp.to_string(),
            &s.standard,
            b"hello",
            &secret,
            T - 10,
            300
        ));
    }

    #[test]
    fn each_secret_alone_verifies_during_rotation() {
        let s = sign(&[SECRET_A, SECRET_B], MSG_ID, T, BODY);
        let t = T.to_string();
        assert_eq!(s.pulsar.matches("v1=").count(), 2);
        assert_eq!(s.standard.split(' ').count(), 2);
        for secret in [SECRET_A, SECRET_B] {
            assert!(verify_pulsar(&s.pulsar, BODY, secret, T, 300));
            assert!(verify_standard(
                MSG_ID,
                &t,
                &s.standard,
                BODY,
                secret,
                T,
                300
            ));
        }
        let other = crate::secrets::generate();
        assert!(!verify_pulsar(&s.pulsar, BODY, &other, T, 300));
        assert!(!verify_standard(
            MSG_ID,
            &t,
            &s.standard,
            BODY,
            &other,
            T,
            300
        ));
    }

    #[test]
    fn tampering_and_stale_timestamps_fail() {
        let s = sign(&[SECRET_A], MSG_ID, T, BODY);
        let t = T.to_string();
        let other_body = br#"{"type":"order.created","data":{"id":"ord_2"}}"#;

        // Wrong body.
        assert!(!verify_pulsar(&s.pulsar, other_body, SECRET_A, T, 300));
        assert!(!verify_standard(
            MSG_ID,
            &t,
            &s.standard,
            other_body,
            SECRET_A,
            T,
            300
        ));
        // Wrong message id.
        assert!(!verify_standard(
            "msg_other",
            &t,
            &s.standard,
            BODY,
            SECRET_A,
            T,
            300
        ));
        // A timestamp swapped in the header breaks the signature.
        let moved = s.pulsar.replace(&t, &(T + 1).to_string());
        assert!(!verify_pulsar(&moved, BODY, SECRET_A, T, 300));
        assert!(!verify_standard(
            MSG_ID,
            &(T + 1).to_string(),
            &s.standard,
            BODY,
            SECRET_A,
            T,
            300
        ));

        // At the tolerance edge: accepted; beyond it (old or future): refused.
        assert!(verify_pulsar(&s.pulsar, BODY, SECRET_A, T + 300, 300));
        assert!(verify_standard(
            MSG_ID,
            &t,
            &s.standard,
            BODY,
            SECRET_A,
            T + 300,
            300
        ));
        assert!(!verify_pulsar(&s.pulsar, BODY, SECRET_A, T + 301, 300));
        assert!(!verify_standard(
            MSG_ID,
            &t,
            &s.standard,
            BODY,
            SECRET_A,
            T + 301,
            300
        ));
        assert!(!verify_pulsar(&s.pulsar, BODY, SECRET_A, T - 301, 300));
        assert!(!verify_standard(
            MSG_ID,
            &t,
            &s.standard,
            BODY,
            SECRET_A,
            T - 301,
            300
        ));
        assert!(!verify_pulsar(&s.pulsar, BODY, SECRET_A, T, -1));
        assert!(!verify_pulsar(
            &s.pulsar,
            BODY,
            SECRET_A,
            i64::MIN,
            i64::MAX
        ));
    }

    #[test]
    fn malformed_headers_fail_without_panicking() {
        let t = T.to_string();
        for header in [
            "",
            "t=",
            "v1=00",
            &format!("t={T}"),
            &format!("t=abc,v1={PULSAR_A}"),
            &format!("t={T},v1=zz"),
            &format!("t={T},v1={}", &PULSAR_A[..10]),
            &format!("t={T},v0={PULSAR_A}"),
        ] {
            assert!(!verify_pulsar(header, BODY, SECRET_A, T, 300), "{header}");
        }
        for header in [
            "",
            "v1,",
            "v1,***",
            &format!("v2,{STANDARD_A}"),
            &format!("v1{STANDARD_A}"),
            &format!("v1,{}", &STANDARD_A[..8]),
        ] {
            assert!(
                !verify_standard(MSG_ID, &t, header, BODY, SECRET_A, T, 300),
                "{header}"
            );
        }
        let good = format!("v1,{STANDARD_A}");
        assert!(!verify_standard(
            MSG_ID, "soon", &good, BODY, SECRET_A, T, 300
        ));
        // Extra entries of other versions and extra whitespace are tolerated.
        assert!(verify_standard(
            MSG_ID,
            &t,
            &format!("v1a,xyz  {good} "),
            BODY,
            SECRET_A,
            T,
            300
        ));
        assert!(verify_pulsar(
            &format!("t={T}, v0=abc, v1={PULSAR_A}"),
            BODY,
            SECRET_A,
            T,
            300
        ));
    }
}
