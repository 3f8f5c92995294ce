//! The audit log's tamper evidence: signed checkpoints of its Merkle tree, and
//! inclusion and consistency proofs (RFC 9162), all from what the `audit_log`
//! subscriber stored ([`pulsar_projections::audit`]).
//!
//! A checkpoint is C2SP `tlog-checkpoint` text (origin, tree size and base64 root on
//! three lines) signed as a C2SP `signed-note` with an Ed25519 key: the signature line is
//! `— <origin> <base64(key id ‖ signature)>`, the key id being the first 4 bytes of
//! SHA-256(origin ‖ "\n" ‖ 0x01 ‖ public key). Proofs and checkpoints are hashes only:
//! they reveal nothing of any workspace's data.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use pulsar_domain::merkle;
use pulsar_domain::scopes::{Action, Permission, Resource};
use pulsar_projections::audit;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::application::{Auth, Error, Result};
use crate::config::Config;

const READ: Permission = Permission(Resource::Audit, Action::Read);

/// The key file in the data dir when `PULSAR_AUDIT_SIGNING_KEY` is unset.
pub const KEY_FILE: &str = "audit-signing.key";

/// Signs checkpoints.
pub struct Signer {
    key: Ed25519KeyPair,
    origin: String,
    key_id: [u8; 4],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("origin", &self.origin)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("audit signing key: {0}")]
    Key(#[from] pulsar_dispatcher::secrets::KeyError),
    #[error("audit signing key: not a valid Ed25519 seed")]
    Invalid,
}

impl Signer {
    /// The configured key (a 32-byte Ed25519 seed), or one generated into the data dir.
    pub fn from_config(config: &Config) -> std::result::Result<Self, SignerError> {
        let seed = pulsar_dispatcher::secrets::key_from_config(
            config.audit_signing_key.as_deref(),
            "PULSAR_AUDIT_SIGNING_KEY",
            &config.data_dir,
            KEY_FILE,
        )?;
        let origin = config
            .audit_origin
            .clone()
            .unwrap_or_else(|| format!("{}/audit", config.listen));
        Self::new(&seed, origin)
    }

    pub fn new(seed: &[u8; 32], origin: String) -> std::result::Result<Self, SignerError> {
        let key = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| SignerError::Invalid)?;
        let key_id = key_id(&origin, key.public_key().as_ref());
        Ok(Self {
            key,
            origin,
            key_id,
        })
    }

    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The signed note of a tree of `size` leaves with `root`: (text, signature).
    pub fn sign(&self, size: u64, root: &merkle::Hash) -> (String, Vec<u8>) {
        let body = format!("{}\n{size}\n{}\n", self.origin, STANDARD.encode(root));
        let signature = self.key.sign(body.as_bytes()).as_ref().to_vec();
        let mut line = self.key_id.to_vec();
        line.extend_from_slice(&signature);
        let text = format!(
            "{body}\n\u{2014} {} {}\n",
            self.origin,
            STANDARD.encode(line)
        );
        (text, signature)
    }
}

/// Signs a checkpoint of the tree as it stands if it grew since the last one; returns
/// the size checkpointed, if any.
pub async fn checkpoint_if_grown(pool: &PgPool, signer: &Signer) -> Result<Option<u64>> {
    let mut conn = pool.acquire().await?;
    let size = audit::size(&mut conn).await? as u64;
    let last: Option<i64> = sqlx::query_scalar("SELECT max(tree_size) FROM audit_checkpoints")
        .fetch_one(&mut *conn)
        .await?;
    if size == 0 || last.is_some_and(|last| last as u64 >= size) {
        return Ok(None);
    }
    let root = audit::root(&mut conn, size).await?;
    let (text, signature) = signer.sign(size, &root);
    sqlx::query(
        "INSERT INTO audit_checkpoints (tree_size, root, origin, key_id, public_key, signature,
                                        checkpoint)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(size as i64)
    .bind(root.to_vec())
    .bind(&signer.origin)
    .bind(hex::encode(signer.key_id))
    .bind(signer.public_key().to_vec())
    .bind(signature)
    .bind(text)
    .execute(&mut *conn)
    .await?;
    Ok(Some(size))
}

/// A signed checkpoint as `GET /audit/checkpoint` returns it, as an export's first line
/// carries it and as auditors save it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    pub origin: String,
    pub tree_size: u64,
    /// Base64.
    pub root_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Base64 Ed25519 public key.
    pub public_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The C2SP tlog-checkpoint text with its signature line.
    pub checkpoint: String,
}

/// Why a checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint of size {tree_size}: {reason}")]
pub struct CheckpointError {
    pub tree_size: u64,
    pub reason: &'static str,
}

impl SignedCheckpoint {
    /// Reads a saved checkpoint: the JSON of `GET /audit/checkpoint`, or an export's
    /// `{"checkpoint": {...}}` line.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let value: Value =
            serde_json::from_str(text.trim()).map_err(|e| format!("not JSON: {e}"))?;
        let value = match value.get("checkpoint") {
            Some(inner @ Value::Object(_)) => inner.clone(),
            _ => value,
        };
        serde_json::from_value(value).map_err(|e| format!("not a checkpoint: {e}"))
    }

    /// Checks the note as an auditor would: its three lines say this origin, size and
    /// root; its signature line names this origin and the key id of this public key;
    /// and the Ed25519 signature over the three lines holds. Returns the root.
    pub fn verify(&self) -> std::result::Result<merkle::Hash, CheckpointError> {
        let fail = |reason| CheckpointError {
            tree_size: self.tree_size,
            reason,
        };
        let root: merkle::Hash = STANDARD
            .decode(&self.root_hash)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| fail("root_hash is not a base64 SHA-256"))?;
        let public_key = STANDARD
            .decode(&self.public_key)
            .map_err(|_| fail("public_key is not base64"))?;
        let (body, signature_line) = self
            .checkpoint
            .split_once("\n\n")
            .ok_or_else(|| fail("the note has no signature line"))?;
        let body = format!("{body}\n");
        if body != format!("{}\n{}\n{}\n", self.origin, self.tree_size, self.root_hash) {
            return Err(fail("the note does not say this origin, size and root"));
        }
        let line = signature_line.lines().next().unwrap_or("");
        let blob = line
            .strip_prefix(&format!("\u{2014} {} ", self.origin))
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() == 4 + 64)
            .ok_or_else(|| fail("the signature line is malformed"))?;
        if blob[..4] != key_id(&self.origin, &public_key) {
            return Err(fail("the signature line names another key"));
        }
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public_key)
            .verify(body.as_bytes(), &blob[4..])
            .map_err(|_| fail("the Ed25519 signature does not verify"))?;
        Ok(root)
    }
}

/// C2SP signed-note key id: the first 4 bytes of SHA-256(origin ‖ "\n" ‖ 0x01 ‖ key).
fn key_id(origin: &str, public_key: &[u8]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(origin.as_bytes());
    hasher.update(b"\n\x01");
    hasher.update(public_key);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The latest signed checkpoint, or the one of `tree_size`.
pub async fn checkpoint(pool: &PgPool, auth: &Auth, tree_size: Option<u64>) -> Result<Value> {
    auth.require(READ)?;
    checkpoint_row(pool, tree_size)
        .await?
        .ok_or_else(|| Error::not_found("Checkpoint"))
}

/// The latest signed checkpoint, for operators.
pub async fn latest_checkpoint(pool: &PgPool) -> Result<Option<SignedCheckpoint>> {
    checkpoint_row(pool, None)
        .await?
        .map(|row| {
            serde_json::from_value(row)
                .map_err(|e| Error::Internal(format!("a stored checkpoint is malformed: {e}")))
        })
        .transpose()
}

async fn checkpoint_row(pool: &PgPool, tree_size: Option<u64>) -> Result<Option<Value>> {
    Ok(sqlx::query_scalar(
        "SELECT jsonb_build_object('origin', origin, 'tree_size', tree_size,
                'root_hash', encode(root, 'base64'), 'signed_at', rfc3339(signed_at),
                'key_id', key_id, 'public_key', encode(public_key, 'base64'),
                'signature', encode(signature, 'base64'), 'checkpoint', checkpoint)
           FROM audit_checkpoints
          WHERE $1::bigint IS NULL OR tree_size = $1
          ORDER BY tree_size DESC LIMIT 1",
    )
    .bind(tree_size.map(|s| s as i64))
    .fetch_optional(pool)
    .await?)
}

/// The tree's size as stored now.
async fn current_size(conn: &mut sqlx::PgConnection) -> Result<u64> {
    Ok(audit::size(conn).await? as u64)
}

fn encode_all(hashes: &[merkle::Hash]) -> Vec<String> {
    hashes.iter().map(|h| STANDARD.encode(h)).collect()
}

/// RFC 9162 inclusion proof of leaf `log_index` in the tree of `tree_size` leaves.
pub async fn inclusion_proof(
    pool: &PgPool,
    auth: &Auth,
    log_index: u64,
    tree_size: u64,
) -> Result<Value> {
    auth.require(READ)?;
    let mut conn = pool.acquire().await?;
    if tree_size > current_size(&mut conn).await? {
        return Err(Error::invalid(
            "tree_size",
            "The tree is not that large yet.",
        ));
    }
    if log_index >= tree_size {
        return Err(Error::invalid(
            "log_index",
            "The log_index must be below tree_size.",
        ));
    }
    let hashes =
        audit::range_roots(&mut conn, &merkle::inclusion_ranges(log_index, tree_size)).await?;
    let leaf = audit::range_roots(&mut conn, &[(log_index, log_index + 1)]).await?;
    Ok(json!({
        "log_index": log_index,
        "tree_size": tree_size,
        "leaf_hash": STANDARD.encode(leaf[0]),
        "hashes": encode_all(&hashes),
    }))
}

/// RFC 9162 consistency proof from the tree of `from` leaves to the tree of `to`.
pub async fn consistency_proof(pool: &PgPool, auth: &Auth, from: u64, to: u64) -> Result<Value> {
    auth.require(READ)?;
    let mut conn = pool.acquire().await?;
    if to > current_size(&mut conn).await? {
        return Err(Error::invalid("to", "The tree is not that large yet."));
    }
    if from == 0 || from > to {
        return Err(Error::invalid(
            "from",
            "The from size must be from 1 to `to`.",
        ));
    }
    let hashes = audit::range_roots(&mut conn, &merkle::consistency_ranges(from, to)).await?;
    Ok(json!({ "from": from, "to": to, "hashes": encode_all(&hashes) }))
}

/// `GET /audit/events`: a page of the caller's workspace's events in commit order.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// What to select; its workspace is always the caller's (set here, whatever it says).
    pub filter: audit::EventFilter,
    /// The `position` of the last event of the previous page.
    pub after: Option<i64>,
    pub limit: i64,
}

/// Most events in one page.
pub const MAX_PAGE: i64 = 1000;

async fn filter_and_start(
    conn: &mut sqlx::PgConnection,
    auth: &Auth,
    query: &EventQuery,
) -> Result<(audit::EventFilter, i64)> {
    auth.require(READ)?;
    let filter = audit::EventFilter {
        workspace_id: Some(auth.workspace_id.clone()),
        below_index: None,
        ..query.filter.clone()
    };
    let start = match query.after {
        None => -1,
        Some(position) => audit::index_of_position(conn, &auth.workspace_id, position)
            .await?
            .ok_or_else(|| {
                Error::invalid("after", "No event of this workspace has that position.")
            })?,
    };
    Ok((filter, start))
}

/// One page; the second value is the `after` of the next page, if there may be one.
pub async fn events(
    pool: &PgPool,
    auth: &Auth,
    query: &EventQuery,
) -> Result<(Vec<Value>, Option<i64>)> {
    let mut conn = pool.acquire().await?;
    let (filter, start) = filter_and_start(&mut conn, auth, query).await?;
    let limit = query.limit.clamp(1, MAX_PAGE);
    let (items, _) = audit::events_page(&mut conn, &filter, start, limit).await?;
    let next = (items.len() as i64 == limit)
        .then(|| items.last().and_then(|i| i["position"].as_i64()))
        .flatten();
    Ok((items, next))
}

/// Every matching event, page by page, for streaming (`application/x-ndjson`): memory
/// stays flat however long the history is.
pub async fn events_stream(
    pool: PgPool,
    auth: &Auth,
    query: &EventQuery,
) -> Result<impl futures::Stream<Item = Result<Vec<Value>>> + Send + 'static> {
    let (filter, start) = {
        let mut conn = pool.acquire().await?;
        filter_and_start(&mut conn, auth, query).await?
    };
    Ok(futures::stream::unfold(
        Some((pool, filter, start)),
        |state| async move {
            let (pool, filter, start) = state?;
            let page = async {
                let mut conn = pool.acquire().await?;
                Ok::<_, Error>(audit::events_page(&mut conn, &filter, start, MAX_PAGE).await?)
            }
            .await;
            match page {
                Ok((items, _)) if items.is_empty() => None,
                Ok((items, last)) => {
                    let next = last.map(|last| (pool, filter, last));
                    Some((Ok(items), next))
                }
                Err(error) => Some((Err(error), None)),
            }
        },
    ))
}

/// Re-hashes every event and checks the root against the latest signed checkpoint.
pub async fn verify(pool: &PgPool, auth: &Auth) -> Result<audit::Verification> {
    auth.require(READ)?;
    let latest: Option<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT tree_size, root FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let checkpoint = latest.and_then(|(size, root)| {
        let root: merkle::Hash = root.try_into().ok()?;
        Some((size as u64, root))
    });
    Ok(audit::verify(pool, checkpoint).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(size: u64, root: &merkle::Hash, seed: u8) -> SignedCheckpoint {
        let signer = Signer::new(&[seed; 32], "pulsar.test/audit".into()).expect("signer");
        let (text, _) = signer.sign(size, root);
        SignedCheckpoint {
            origin: "pulsar.test/audit".into(),
            tree_size: size,
            root_hash: STANDARD.encode(root),
            signed_at: None,
            key_id: None,
            public_key: STANDARD.encode(signer.public_key()),
            signature: None,
            checkpoint: text,
        }
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_is_refused() {
        let root = merkle::leaf_hash(b"x");
        let good = signed(7, &root, 1);
        assert_eq!(good.verify(), Ok(root));
        // Also from a saved file, bare or as an export's first line.
        let text = serde_json::to_string(&good).expect("json");
        assert_eq!(SignedCheckpoint::parse(&text).expect("bare"), good);
        let line = json!({ "checkpoint": good }).to_string();
        assert_eq!(SignedCheckpoint::parse(&line).expect("line"), good);

        let mut other_size = good.clone();
        other_size.tree_size = 8;
        let mut other_root = good.clone();
        other_root.root_hash = STANDARD.encode(merkle::leaf_hash(b"y"));
        let mut other_key = good.clone();
        other_key.public_key = signed(7, &root, 2).public_key;
        let mut resigned_text = good.clone();
        resigned_text.checkpoint = good.checkpoint.replace("\n7\n", "\n8\n");
        let mut cut = good.clone();
        cut.checkpoint = good.checkpoint.split("\n\n").next().unwrap_or("").into();
        for (what, bad) in [
            ("size", other_size),
            ("root", other_root),
            ("key", other_key),
            ("text", resigned_text),
            ("no signature", cut),
        ] {
            assert!(bad.verify().is_err(), "{what}");
        }
    }
}
