//! The audit log's Merkle tree, checked by an independent verifier: a Python script
//! written from RFC 9162 and API.md (not from the server's code) recomputes every leaf
//! from the `events` table and the root, and must agree with what the server stored.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use pulsar_domain::merkle::{self, Hash};
use pulsar_projections::audit::{self, perfect_roots};
use pulsar_projections::Position;
use pulsar_tests::{every_kind_of_command, TestApp};
use serde_json::Value;

/// Independent: canonical bytes with `json.dumps`, leaves and MTH straight from the RFC.
const VERIFIER: &str = r#"
import hashlib, json, sys

def leaf(data): return hashlib.sha256(b"\x00" + data).digest()
def node(l, r): return hashlib.sha256(b"\x01" + l + r).digest()
def mth(leaves):
    n = len(leaves)
    if n == 0: return hashlib.sha256(b"").digest()
    if n == 1: return leaves[0]
    k = 1
    while k * 2 < n: k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))

rows = [json.loads(line) for line in sys.stdin if line.strip()]
leaves = []
for i, r in enumerate(rows):
    event_id = "evt_" + hashlib.sha256(
        f"{r['aggregate_type']}/{r['aggregate_id']}/{r['sequence']}".encode()).hexdigest()[:32]
    meta = {k: r["metadata"].get(k) for k in
            ("actor_type", "actor_id", "request_id", "client_ip", "user_agent", "workspace_id")}
    entry = {"position": r["position"], "log_index": i, "event_id": event_id,
             "aggregate_type": r["aggregate_type"], "aggregate_id": r["aggregate_id"],
             "sequence": r["sequence"], "event_type": r["event_type"],
             "event_version": r["event_version"], "payload": r["payload"], "metadata": meta,
             "recorded_at": r["recorded_at"]}
    data = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    leaves.append(leaf(data))
print(json.dumps({"leaves": [l.hex() for l in leaves], "root": mth(leaves).hex()}))
"#;

/// The events in commit order as the verifier reads them.
async fn export(app: &TestApp) -> String {
    let rows: Vec<Value> = sqlx::query_scalar(
        "SELECT jsonb_build_object('position', global_position, 'aggregate_type', aggregate_type,
                'aggregate_id', aggregate_id, 'sequence', sequence, 'event_type', event_type,
                'event_version', event_version, 'payload', payload,
                'metadata', metadata || jsonb_build_object('workspace_id',
                            coalesce(metadata ->> 'workspace_id', event_workspace(events))),
                'recorded_at', to_char(recorded_at AT TIME ZONE 'UTC',
                                       'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))
           FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(app.pool())
    .await
    .expect("events");
    rows.iter().map(|r| format!("{r}\n")).collect()
}

fn verify_independently(lines: &str) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", VERIFIER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json")
}

async fn caught_up(app: &TestApp) {
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

/// The root of the first `size` leaves from the stored subtree roots alone.
async fn stored_root(app: &TestApp, size: u64) -> Hash {
    let parts = merkle::perfect_parts(0, size);
    let mut conn = app.pool().acquire().await.expect("conn");
    let found = perfect_roots(&mut conn, &parts).await.expect("roots");
    let hashes: Vec<Hash> = parts
        .iter()
        .map(|p| found.iter().find(|(f, _)| f == p).expect("stored").1)
        .collect();
    merkle::fold_parts(&hashes)
}

#[tokio::test]
async fn every_leaf_and_the_root_match_an_independent_verifier() {
    let app = TestApp::start().await;
    every_kind_of_command(&app).await;
    // Upkeep may still append (a rotation's end): wait until the tree holds every event.
    for _ in 0..50 {
        caught_up(&app).await;
        let (leaves, events): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM audit_leaves), (SELECT count(*) FROM events)",
        )
        .fetch_one(app.pool())
        .await
        .expect("counts");
        if leaves == events {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let stored: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT log_index, leaf FROM audit_leaves ORDER BY log_index")
            .fetch_all(app.pool())
            .await
            .expect("leaves");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(stored.len() as i64, events, "one leaf per event");
    assert!(
        stored
            .iter()
            .enumerate()
            .all(|(i, (index, _))| *index == i as i64),
        "log_index is gap free from 0"
    );
    // Leaves follow commit order.
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT log_index, row_number() OVER
                  (ORDER BY transaction_id, global_position) - 1 AS expected
                  FROM audit_leaves) t WHERE log_index <> expected",
    )
    .fetch_one(app.pool())
    .await
    .expect("order");
    assert_eq!(out_of_order, 0);

    let independent = verify_independently(&export(&app).await);
    let leaves: Vec<String> = stored.iter().map(|(_, leaf)| hex::encode(leaf)).collect();
    assert_eq!(
        independent["leaves"].as_array().expect("leaves").len(),
        leaves.len()
    );
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(independent["leaves"][i], leaf.as_str(), "leaf {i}");
    }
    let root = stored_root(&app, leaves.len() as u64).await;
    assert_eq!(independent["root"], hex::encode(root));

    // Someone with the database's keys switches off the append-only trigger and
    // rewrites one event: the independent verifier no longer gets the stored leaf there.
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(app.pool())
        .await
        .expect("disable trigger");
    sqlx::query(
        "UPDATE events SET metadata = jsonb_set(metadata, '{request_id}', '\"req_forged\"')
          WHERE (transaction_id, global_position) = (SELECT transaction_id, global_position
                 FROM events ORDER BY transaction_id, global_position OFFSET 3 LIMIT 1)",
    )
    .execute(app.pool())
    .await
    .expect("tamper");
    let tampered = verify_independently(&export(&app).await);
    let first_broken = (0..leaves.len())
        .find(|i| tampered["leaves"][*i] != leaves[*i].as_str())
        .expect("the change shows");
    assert_eq!(first_broken, 3);
    assert_ne!(tampered["root"], hex::encode(root));
    app.stop().await;
}
