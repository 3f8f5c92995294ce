//! Webhook signing secrets, and how they are kept at rest.
//!
//! - **Shown once.** A secret (`whsec_` followed by the standard base64 of 32 random bytes,
//!   see [`generate`]; a caller may also supply its own, checked by [`validate`]) is
//!   returned in the response that creates or rotates it, and never again.
//! - **Events carry the fingerprint.** The event log is append-only and widely read, so
//!   an event records [`fingerprint`] (the first 8 bytes of the secret's SHA-256, in hex),
//!   enough to tell which secret was in force, never the secret itself.
//! - **Rows hold sealed bytes.** The dispatcher needs the secret itself to sign
//!   deliveries, so the row that keeps it stores [`SecretBox::seal`]'s output:
//!   ChaCha20-Poly1305 with a random nonce per seal, laid out as
//!   `nonce (12) || ciphertext || tag (16)`. The endpoint id is the associated data, so a
//!   sealed secret copied onto another endpoint's row does not open.
//! - **The key.** [`SecretBox::from_config`] takes `PULSAR_SECRET_KEY` (64 hex characters,
//!   or the standard base64 of 32 bytes) when it is set. Otherwise it reads
//!   `<data dir>/secret.key` (the base64 of 32 bytes and a newline), and when that file
//!   does not exist it generates a key and writes it there with mode `0600`.
//!   Every process that signs deliveries or opens rows must use the same key.
//! - **Losing the key** (or changing it) makes every stored secret unreadable: there is no
//!   recovery, and every endpoint's secret must be rotated (and the new secrets handed to
//!   the receivers). Back the key up with the database.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::RngCore as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest as _, Sha256};

/// What every webhook signing secret starts with.
pub const PREFIX: &str = "whsec_";

/// Bytes of randomness in a generated secret.
const GENERATED_LEN: usize = 32;
/// Decoded lengths a caller-supplied secret may have.
const MIN_LEN: usize = 24;
const MAX_LEN: usize = 64;

/// Name of the key file under the data directory.
pub const KEY_FILE: &str = "secret.key";

/// A new secret: `whsec_` and the standard (padded) base64 of 32 bytes from the OS.
pub fn generate() -> String {
    let mut bytes = [0u8; GENERATED_LEN];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{PREFIX}{}", STANDARD.encode(bytes))
}

/// Checks a caller-supplied secret: `whsec_` followed by the standard base64 of 24 to 64
/// bytes. The error is a sentence for a field error; it never repeats the secret.
pub fn validate(secret: &str) -> Result<(), &'static str> {
    let Some(encoded) = secret.strip_prefix(PREFIX) else {
        return Err("The secret must start with whsec_ followed by the base64 of 24 to 64 bytes.");
    };
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return Err("The secret must be whsec_ followed by the base64 of 24 to 64 bytes.");
    };
    if !(MIN_LEN..=MAX_LEN).contains(&decoded.len()) {
        return Err("The secret must be whsec_ followed by the base64 of 24 to 64 bytes.");
    }
    Ok(())
}

/// What events carry instead of the secret: lowercase hex of the first 8 bytes of the
/// SHA-256 of the whole secret string (16 characters).
pub fn fingerprint(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    hex::encode(&digest[..8])
}

/// The key behind [`SecretBox`] could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, creating or writing the key file failed.
    #[error("cannot use the webhook secret key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `PULSAR_SECRET_KEY` or the key file does not hold a valid key. The message names
    /// the setting and the expected form, never the value.
    #[error("{message}")]
    Invalid { message: String },
}

/// A sealed secret did not open. Deliberately says nothing about the bytes involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cannot decrypt a webhook secret: wrong PULSAR_SECRET_KEY or a damaged row")]
pub struct OpenError;

/// Seals webhook secrets for storage and opens them again (ChaCha20-Poly1305, the
/// endpoint id as associated data). Its `Debug` output never shows the key.
pub struct SecretBox {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("algorithm", &"CHACHA20_POLY1305")
            .field("key", &"<redacted>")
            .finish()
    }
}

const TAG_LEN: usize = 16;

impl SecretBox {
    /// A box using `key`.
    pub fn new(key: [u8; 32]) -> Self {
        let unbound = match UnboundKey::new(&CHACHA20_POLY1305, &key) {
            Ok(unbound) => unbound,
            // ring only refuses a key of the wrong length; ChaCha20-Poly1305 keys are 32
            // bytes and the type guarantees it.
            Err(_) => unreachable!("a 32-byte key is valid for ChaCha20-Poly1305"),
        };
        Self {
            key: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// The box for the configured key: `secret_key` (`PULSAR_SECRET_KEY`) when given, as
    /// 64 hex characters or the standard base64 of 32 bytes; otherwise the key in
    /// `data_dir/secret.key`, generated (mode `0600`) when the file does not exist.
    ///
    /// Two processes starting together on an empty data directory end up with the same
    /// key: the file is created with `create_new`, and the loser reads the winner's file.
    pub fn from_config(secret_key: Option<&str>, data_dir: &Path) -> Result<Self, KeyError> {
        key_from_config(secret_key, "PULSAR_SECRET_KEY", data_dir, KEY_FILE).map(Self::new)
    }

    /// Seals `secret` for the row of endpoint `endpoint_id`: `nonce || ciphertext || tag`.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails (a nonce must never be
    /// guessed or reused, so there is no fallback).
    pub fn seal(&self, endpoint_id: &str, secret: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        if self.rng.fill(&mut nonce).is_err() {
            panic!("the operating system's random number generator failed");
        }
        let mut in_out = secret.as_bytes().to_vec();
        let sealed = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(endpoint_id.as_bytes()),
            &mut in_out,
        );
        if sealed.is_err() {
            // ring refuses only inputs longer than ChaCha20's 256 GiB limit.
            unreachable!("a webhook secret is far below ChaCha20-Poly1305's length limit");
        }
        let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&in_out);
        out
    }

    /// Opens what [`SecretBox::seal`] produced for the same endpoint id and key.
    pub fn open(&self, endpoint_id: &str, sealed: &[u8]) -> Result<String, OpenError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(endpoint_id.as_bytes()), &mut in_out)
            .map_err(|_| OpenError)?;
        let len = plain.len();
        in_out.truncate(len);
        String::from_utf8(in_out).map_err(|_| OpenError)
    }
}

/// 64 hex characters or the standard base64 of exactly 32 bytes (surrounding whitespace
/// ignored).
fn parse_key(value: &str) -> Option<[u8; 32]> {
    let value = value.trim();
    if value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        hex::decode_to_slice(value, &mut key).ok()?;
        return Some(key);
    }
    STANDARD.decode(value).ok()?.try_into().ok()
}

/// How often, and how far apart, a reader retries a key file another process has just
/// created but not yet finished writing.
const READ_ATTEMPTS: u32 = 20;
const READ_PAUSE: Duration = Duration::from_millis(50);

/// A 32-byte key from its setting (`variable`, 64 hex characters or the standard base64
/// of 32 bytes) or, when unset, from `data_dir/file`, generated (mode `0600`) when the file
/// does not exist. Two processes starting together agree on one key: the file is created
/// with `create_new`, and the loser reads the winner's file.
pub fn key_from_config(
    value: Option<&str>,
    variable: &str,
    data_dir: &Path,
    file: &str,
) -> Result<[u8; 32], KeyError> {
    match value {
        Some(value) => parse_key(value).ok_or_else(|| KeyError::Invalid {
            message: format!(
                "{variable} must be 64 hexadecimal characters or the standard base64 of \
                 exactly 32 bytes (e.g. the output of `openssl rand -hex 32`)."
            ),
        }),
        None => load_or_create_key_file(data_dir, file),
    }
}

fn load_or_create_key_file(data_dir: &Path, file: &str) -> Result<[u8; 32], KeyError> {
    let path = data_dir.join(file);
    match read_key_file(&path, READ_ATTEMPTS) {
        Err(KeyError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }

    fs::create_dir_all(data_dir).map_err(|source| KeyError::Io {
        path: data_dir.to_owned(),
        source,
    })?;
    let io_error = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(file) => file,
        // Another process created it first: use its key (it may still be writing).
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return read_key_file(&path, READ_ATTEMPTS)
        }
        Err(e) => return Err(io_error(e)),
    };
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    file.write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error)?;
    tracing::warn!(
        path = %path.display(),
        "generated a new key; back it up with the database (without the webhook secret key \
         every endpoint's secret must be rotated; without the audit signing key old \
         checkpoints cannot be re-signed)"
    );
    Ok(key)
}

/// Reads the key file. A file that is empty or lacks its final newline may be one another
/// process is writing, so it is read again up to `attempts` times in all.
fn read_key_file(path: &Path, attempts: u32) -> Result<[u8; 32], KeyError> {
    let mut attempt = 1;
    let contents = loop {
        let contents = fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_owned(),
            source,
        })?;
        if contents.ends_with('\n') || attempt >= attempts {
            break contents;
        }
        attempt += 1;
        std::thread::sleep(READ_PAUSE);
    };
    if let Ok(metadata) = fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the webhook secret key file is readable by other users; chmod 600 it"
            );
        }
    }
    parse_key(&contents).ok_or_else(|| KeyError::Invalid {
        message: format!(
            "the webhook secret key file {} must hold the standard base64 of exactly 32 bytes \
             (or 64 hexadecimal characters); restore it from a backup, or delete it to \
             generate a new key and then rotate every endpoint's secret",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU32, Ordering};

    fn unique_dir(label: &str) -> PathBuf {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos();
        std::env::temp_dir().join(format!(
            "pulsar-secrets-{label}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[test]
    fn generated_secrets_validate_and_differ() {
        let a = generate();
        let b = generate();
        assert!(a.starts_with(PREFIX));
        assert_eq!(validate(&a), Ok(()));
        let decoded = STANDARD
            .decode(&a[PREFIX.len()..])
            .expect("generated secret is base64");
        assert_eq!(decoded.len(), 32);
        assert_ne!(a, b);
    }

    #[test]
    fn validate_rejects_bad_secrets() {
        let b64 = |n: usize| STANDARD.encode(vec![7u8; n]);
        // Missing prefix.
        assert!(validate(&b64(32)).is_err());
        assert!(validate(&format!("whsec{}", b64(32))).is_err());
        // Not base64.
        assert!(validate("whsec_not base64!!").is_err());
        assert!(validate(&format!("{PREFIX}{}", &b64(32)[1..])).is_err());
        // Too short and too long.
        assert!(validate(&format!("{PREFIX}{}", b64(16))).is_err());
        assert!(validate(&format!("{PREFIX}{}", b64(65))).is_err());
        assert!(validate(PREFIX).is_err());
        // Bounds are inclusive.
        assert_eq!(validate(&format!("{PREFIX}{}", b64(24))), Ok(()));
        assert_eq!(validate(&format!("{PREFIX}{}", b64(64))), Ok(()));
        let message = validate("whsec_AAAA").expect_err("too short");
        assert!(message.contains("whsec_") && message.ends_with('.'));
    }

    #[test]
    fn fingerprint_is_16_hex_and_stable() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let f = fingerprint(secret);
        assert_eq!(f.len(), 16);
        assert!(f
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(f, fingerprint(secret));
        // sha256("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")[..8], computed with Python.
        assert_eq!(f, "96ad2ccd81462a76");
        assert_ne!(f, fingerprint(&generate()));
    }

    #[test]
    fn seal_open_round_trip() {
        let sb = SecretBox::new([42; 32]);
        let secret = generate();
        let sealed = sb.seal("ep_1", &secret);
        assert_eq!(sealed.len(), NONCE_LEN + secret.len() + TAG_LEN);
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert_eq!(sb.open("ep_1", &sealed), Ok(secret.clone()));
        // A fresh nonce each time.
        assert_ne!(sb.seal("ep_1", &secret), sealed);
    }

    #[test]
    fn open_fails_for_another_endpoint_key_or_damage() {
        let sb = SecretBox::new([1; 32]);
        let sealed = sb.seal("ep_1", "whsec_secret");
        assert_eq!(sb.open("ep_2", &sealed), Err(OpenError));
        assert_eq!(
            SecretBox::new([2; 32]).open("ep_1", &sealed),
            Err(OpenError)
        );
        for i in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[i] ^= 0x01;
            assert_eq!(sb.open("ep_1", &damaged), Err(OpenError), "byte {i}");
        }
        assert_eq!(sb.open("ep_1", &sealed[..sealed.len() - 1]), Err(OpenError));
        assert_eq!(sb.open("ep_1", &[]), Err(OpenError));
        assert!(!OpenError.to_string().contains("whsec_secret"));
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", SecretBox::new([0xab; 32]));
        assert!(shown.contains("redacted"));
        assert!(!shown.to_lowercase().contains("abab"));
        assert!(!shown.contains("171"));
    }

    #[test]
    fn from_config_with_hex_and_base64_keys() {
        let key = [9u8; 32];
        let dir = unique_dir("unused");
        let reference = SecretBox::new(key);
        let sealed = reference.seal("ep", "whsec_x");
        for value in [
            hex::encode(key),
            hex::encode_upper(key),
            STANDARD.encode(key),
            format!(" {}\n", hex::encode(key)),
        ] {
            let sb = SecretBox::from_config(Some(&value), &dir).expect("valid key");
            assert_eq!(sb.open("ep", &sealed).as_deref(), Ok("whsec_x"));
        }
        // The data directory is not touched when the key is configured.
        assert!(!dir.exists());
    }

    #[test]
    fn from_config_rejects_bad_keys_without_echoing_them() {
        let dir = unique_dir("unused");
        for bad in [
            "zz-not-a-key-zz",
            "abababababababababababababababababababababababababababababababab00", // 66 hex
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",   // 64, not hex
            "c2hvcnQta2V5LXNob3J0LWtleQ==",                                       // 19 bytes
            "",
        ] {
            let err = SecretBox::from_config(Some(bad), &dir).expect_err("invalid key");
            assert!(matches!(err, KeyError::Invalid { .. }));
            let text = err.to_string();
            assert!(text.contains("PULSAR_SECRET_KEY"), "{text}");
            assert!(text.contains("32 bytes") && text.contains("hex"), "{text}");
            if !bad.is_empty() {
                assert!(!text.contains(bad), "{text}");
            }
        }
        assert!(!dir.exists());
    }

    #[test]
    fn from_config_creates_then_reuses_the_key_file() {
        let data_dir = unique_dir("keyfile").join("nested");
        let path = data_dir.join(KEY_FILE);
        let first = SecretBox::from_config(None, &data_dir).expect("key file created");
        let mode = fs::metadata(&path)
            .expect("key file exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let contents = fs::read_to_string(&path).expect("key file readable");
        assert!(contents.ends_with('\n'));
        assert_eq!(
            STANDARD
                .decode(contents.trim_end())
                .expect("key file is base64")
                .len(),
            32
        );

        let sealed = first.seal("ep_9", "whsec_reused");
        let second = SecretBox::from_config(None, &data_dir).expect("key file read back");
        assert_eq!(second.open("ep_9", &sealed).as_deref(), Ok("whsec_reused"));
        assert_eq!(fs::read_to_string(&path).expect("unchanged"), contents);

        // A damaged key file is an error naming the file, not a silent new key.
        fs::write(&path, "garbage\n").expect("overwrite");
        let err = SecretBox::from_config(None, &data_dir).expect_err("damaged file");
        assert!(matches!(err, KeyError::Invalid { .. }));
        assert!(!err.to_string().contains("garbage"));

        let _ = fs::remove_dir_all(data_dir.parent().expect("has parent"));
    }

    #[test]
    fn racing_creators_agree_on_one_key() {
        let data_dir = unique_dir("race");
        let boxes: Vec<SecretBox> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SecretBox::from_config(None, &data_dir)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("no panic").expect("key"))
                .collect()
        });
        let sealed = boxes[0].seal("ep", "whsec_race");
        for sb in &boxes {
            assert_eq!(sb.open("ep", &sealed).as_deref(), Ok("whsec_race"));
        }
        let _ = fs::remove_dir_all(&data_dir);
    }
}
