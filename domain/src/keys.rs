//! The API key format: `psk_<public id>_<secret><checksum>`.
//!
//! `apiKey` is `psk_` + a 16-character public id; `apiSecret` is 36 random letters and
//! digits followed by a 6-character checksum (CRC-32 in base 62) over everything before
//! it, so a secret scanner can tell a real key from a random string offline, and the
//! verifier can refuse a typo without a lookup. Only SHA-256 of the secret is stored: it
//! is high-entropy, so a fast hash is right (argon2 is for human passwords).

use rand::distributions::{Alphanumeric, DistString};
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "psk_";
const PUBLIC_ID_LEN: usize = 16;
const SECRET_RANDOM_LEN: usize = 36;
const CHECKSUM_LEN: usize = 6;
/// Characters of the key shown in `prefix` (`psk_` + 4).
pub const DISPLAY_PREFIX_LEN: usize = 8;

/// A freshly generated key; the only time the secret exists in clear.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// `psk_` + public id: the `apiKey` half.
    pub api_key: String,
    /// The `apiSecret` half, checksum included.
    pub api_secret: String,
}

impl NewKey {
    pub fn generate() -> Self {
        let mut rng = rand::thread_rng();
        let api_key = format!(
            "{KEY_PREFIX}{}",
            Alphanumeric.sample_string(&mut rng, PUBLIC_ID_LEN)
        );
        let random = Alphanumeric.sample_string(&mut rng, SECRET_RANDOM_LEN);
        let checksum = checksum(&format!("{api_key}_{random}"));
        Self {
            api_key,
            api_secret: format!("{random}{checksum}"),
        }
    }

    /// The full key: `apiKey` + `_` + `apiSecret`.
    pub fn full(&self) -> String {
        format!("{}_{}", self.api_key, self.api_secret)
    }

    pub fn secret_hash(&self) -> [u8; 32] {
        secret_hash(&self.api_secret)
    }

    /// `psk_4fQz`: what lists show.
    pub fn display_prefix(&self) -> String {
        self.api_key.chars().take(DISPLAY_PREFIX_LEN).collect()
    }

    /// `psk_4fQz…x9Tb`: the first and last characters of the full key.
    pub fn masked(&self) -> String {
        let full = self.full();
        format!("{}…{}", self.display_prefix(), &full[full.len() - 4..])
    }
}

/// SHA-256 of a secret, as stored.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A credential split into its halves, after the offline checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey<'a> {
    pub api_key: &'a str,
    pub api_secret: &'a str,
}

/// Why a string is not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a Pulsar API key")]
    Shape,
    #[error("the key's checksum does not match")]
    Checksum,
}

/// Parses the two halves (as sent in `x-api-key` / `x-api-secret`), checksum included.
pub fn parse_pair<'a>(
    api_key: &'a str,
    api_secret: &'a str,
) -> Result<ParsedKey<'a>, KeyFormatError> {
    let public = api_key
        .strip_prefix(KEY_PREFIX)
        .ok_or(KeyFormatError::Shape)?;
    let alnum = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric());
    if public.len() != PUBLIC_ID_LEN
        || api_secret.len() != SECRET_RANDOM_LEN + CHECKSUM_LEN
        || !alnum(public)
        || !alnum(api_secret)
    {
        return Err(KeyFormatError::Shape);
    }
    let (random, sum) = api_secret.split_at(SECRET_RANDOM_LEN);
    if checksum(&format!("{api_key}_{random}")) != sum {
        return Err(KeyFormatError::Checksum);
    }
    Ok(ParsedKey {
        api_key,
        api_secret,
    })
}

/// Parses a full key (`Authorization: Bearer psk_…`).
pub fn parse_full(key: &str) -> Result<ParsedKey<'_>, KeyFormatError> {
    let split = KEY_PREFIX.len() + PUBLIC_ID_LEN;
    if key.len() != split + 1 + SECRET_RANDOM_LEN + CHECKSUM_LEN
        || key.as_bytes().get(split) != Some(&b'_')
    {
        return Err(KeyFormatError::Shape);
    }
    if !key.is_char_boundary(split) {
        return Err(KeyFormatError::Shape);
    }
    parse_pair(&key[..split], &key[split + 1..])
}

/// CRC-32 (IEEE) of `data` in base 62, 6 characters.
fn checksum(data: &str) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut crc = !0u32;
    for byte in data.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    let mut value = u64::from(!crc);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_both_ways() {
        let key = NewKey::generate();
        let full = key.full();
        assert_eq!(
            parse_full(&full),
            Ok(ParsedKey {
                api_key: &key.api_key,
                api_secret: &key.api_secret
            })
        );
        assert_eq!(
            parse_pair(&key.api_key, &key.api_secret).map(|p| p.api_secret),
            Ok(key.api_secret.as_str())
        );
        assert!(
            full.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "URL-safe"
        );
        assert!(key.api_secret.len() >= 32);
        assert_eq!(key.display_prefix().len(), 8);
        assert!(key.masked().starts_with(&key.display_prefix()));
        assert!(key.masked().ends_with(&full[full.len() - 4..]));
    }

    #[test]
    fn the_checksum_catches_typos_offline() {
        let key = NewKey::generate();
        let mut typo = key.full().into_bytes();
        let i = 30;
        typo[i] = if typo[i] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert_eq!(parse_full(&typo), Err(KeyFormatError::Checksum));
        for junk in [
            "",
            "psk_",
            "psk_short_secret",
            "pst_abc",
            &"x".repeat(63),
            "psk_ééééééééééééééé_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        ] {
            assert!(parse_full(junk).is_err(), "{junk}");
        }
    }

    #[test]
    fn crc32_matches_the_standard() {
        // CRC-32/IEEE of "123456789" is 0xCBF43926.
        let mut value = 0xCBF4_3926u64;
        let mut expected = String::new();
        for _ in 0..6 {
            expected.insert(
                0,
                b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    [(value % 62) as usize] as char,
            );
            value /= 62;
        }
        assert_eq!(checksum("123456789"), expected);
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        proptest! {
            /// No input makes the parser panic, and whatever it accepts has the key's
            /// shape and parses the same way as two halves.
            #[test]
            fn any_string_is_refused_or_a_well_formed_key(input in "\\PC{0,80}|psk_[A-Za-z0-9]{16}_[A-Za-z0-9]{42}") {
                if let Ok(parsed) = parse_full(&input) {
                    prop_assert!(parsed.api_key.starts_with(KEY_PREFIX));
                    prop_assert!(input.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                    prop_assert_eq!(parse_pair(parsed.api_key, parsed.api_secret), Ok(parsed));
                }
            }

            /// CRC-32 catches every single-character change, so a mistyped key is refused
            /// offline, before any lookup.
            #[test]
            fn every_single_character_typo_is_caught(position in 4usize..63, replacement in "[A-Za-z0-9]") {
                let key = NewKey::generate().full();
                let mut typo = key.clone().into_bytes();
                prop_assume!(position != 20, "the separator");
                let replacement = replacement.as_bytes()[0];
                prop_assume!(typo[position] != replacement);
                typo[position] = replacement;
                let typo = String::from_utf8(typo).expect("ascii");
                prop_assert!(parse_full(&typo).is_err(), "{} accepted", typo);
                prop_assert!(parse_full(&key).is_ok());
            }
        }
    }
}
