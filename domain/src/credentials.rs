//! Credential formats and hashing.
//!
//! Session tokens are high-entropy random strings, so a fast SHA-256 is the right hash for
//! them; human passwords get argon2id.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

/// Prefix of opaque session tokens.
pub const SESSION_TOKEN_PREFIX: &str = "pst_";

/// Shortest password accepted (API.md); the longest bounds hashing cost.
pub const PASSWORD_MIN_CHARS: usize = 10;
pub const PASSWORD_MAX_CHARS: usize = 512;

/// A new session token: `pst_` + 40 letters and digits (~238 bits).
pub fn new_session_token() -> String {
    let random = Alphanumeric.sample_string(&mut rand::thread_rng(), 40);
    format!("{SESSION_TOKEN_PREFIX}{random}")
}

/// Whether `token` has the shape of a session token (no lookup).
pub fn is_session_token(token: &str) -> bool {
    token
        .strip_prefix(SESSION_TOKEN_PREFIX)
        .is_some_and(|rest| rest.len() == 40 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// SHA-256 of a high-entropy token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Checks a new password against the policy.
pub fn check_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < PASSWORD_MIN_CHARS {
        return Err(format!(
            "The password must be at least {PASSWORD_MIN_CHARS} characters."
        ));
    }
    if chars > PASSWORD_MAX_CHARS {
        return Err(format!(
            "The password may not be greater than {PASSWORD_MAX_CHARS} characters."
        ));
    }
    Ok(())
}

/// argon2id PHC string for a password.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches a stored PHC string; a malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A PHC string to verify against when the user does not exist, so that a wrong email
/// costs as much time as a wrong password.
pub fn dummy_password_hash() -> &'static str {
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0ZVxDwWYp1Ppt0f6BnBH+mAvZVCc2HydQ2Af+VCS0X0"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_have_a_checkable_shape() {
        let token = new_session_token();
        assert!(is_session_token(&token));
        assert!(!is_session_token("pst_short"));
        assert!(!is_session_token(&token.replace("pst_", "psk_")));
        assert_ne!(new_session_token(), token);
        assert_eq!(token_hash(&token).len(), 32);
    }

    #[test]
    fn passwords_round_trip_and_are_salted() {
        let a = hash_password("correct horse battery").expect("hash");
        let b = hash_password("correct horse battery").expect("hash");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("wrong horse battery", &a));
        assert!(!verify_password("anything", "not a phc string"));
        assert!(PasswordHash::new(dummy_password_hash()).is_ok());
    }

    #[test]
    fn password_policy() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough!").is_ok());
        assert!(check_password(&"x".repeat(600)).is_err());
    }
}
