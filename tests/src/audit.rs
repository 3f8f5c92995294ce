//! Helpers for audit tests: the independent verifier's RFC 9162 functions and waits for
//! the audit log and its checkpoints.

use std::time::Duration;

use pulsar_projections::audit;
use pulsar_projections::Position;
use serde_json::Value;

use crate::{TestApp, User};

/// RFC 9162 sections 2.1.3.2 and 2.1.4.2 and the C2SP signed-note signature, in Python
/// (`verify_inclusion`, `verify_consistency`, `checkpoint_ok`), written from the RFC and
/// the C2SP specs, not from the server's code.
pub const RFC_9162_PY: &str = r#"
import base64, hashlib, json, sys
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

def node(l, r): return hashlib.sha256(b"\x01" + l + r).digest()

def verify_inclusion(index, size, leaf, proof, root):
    if index >= size: return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1; sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1; sn >>= 1
    return sn == 0 and r == root

def verify_consistency(first, second, first_root, second_root, proof):
    if first == second: return not proof and first_root == second_root
    if first == 0 or first > second or not proof and first & (first - 1): return False
    path = list(proof)
    if first & (first - 1) == 0: path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1; sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0: return False
        if fn & 1 or fn == sn:
            fr = node(c, fr); sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1; sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1; sn >>= 1
    return fr == first_root and sr == second_root and sn == 0

def checkpoint_ok(cp):
    text = cp["checkpoint"]
    body, _, sig_lines = text.partition("\n\n")
    body += "\n"
    origin, size, root = body.split("\n")[:3]
    if origin != cp["origin"] or int(size) != cp["tree_size"] or root != cp["root_hash"]:
        return False
    line = sig_lines.strip().split(" ")
    if line[0] != "\u2014" or line[1] != origin: return False
    blob = base64.b64decode(line[2])
    key = base64.b64decode(cp["public_key"])
    key_id = hashlib.sha256(origin.encode() + b"\n\x01" + key).digest()[:4]
    if blob[:4] != key_id: return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(blob[4:], body.encode())
        return True
    except Exception:
        return False
"#;

/// Waits until the audit log holds every event of the log's head.
pub async fn caught_up(app: &TestApp) {
    let (tx, position): (String, i64) = sqlx::query_as(
        "SELECT transaction_id::text, global_position FROM events
          ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(app.pool())
    .await
    .expect("head");
    let head = Position::from_db(&tx, position).expect("position");
    assert!(
        app.runtime
            .state
            .subscriptions
            .wait_for(&[audit::NAME], head, Duration::from_secs(20))
            .await,
        "the audit log caught up"
    );
}

/// Waits for a signed checkpoint of at least `at_least` leaves.
pub async fn wait_checkpoint(app: &TestApp, user: &User, at_least: u64) -> Value {
    for _ in 0..100 {
        let got = app.get("/api/v1/audit/checkpoint", user).await;
        if got.status == 200 && got.body["tree_size"].as_u64().unwrap_or(0) >= at_least {
            return got.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint of {at_least} leaves");
}
