//! The audit log's Merkle tree, checked by an independent verifier: a Python script
//! written from RFC 9162 and API.md (not from the server's code) recomputes every leaf
//! from the `events` table and the root, and must agree with what the server stored.

use std::time::Duration;

use pulsar_domain::merkle::{self, Hash};
use pulsar_projections::audit::perfect_roots;
use pulsar_tests::audit::{caught_up, wait_checkpoint, RFC_9162_PY};
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
    let (ok, stdout, stderr) = pulsar_tests::python(VERIFIER, lines.as_bytes());
    assert!(ok, "{stderr}");
    serde_json::from_str(&stdout).expect("json")
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
    let owner = every_kind_of_command(&app).await;
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
    let user = pulsar_tests::User::clone(&owner);
    let checkpoint = wait_checkpoint(&app, &user, leaves.len() as u64).await;
    let intact = app.get("/api/v1/audit/verify", &user).await;
    intact.expect(200);
    assert_eq!(intact.body["intact"], true, "{}", intact.text);
    assert_eq!(intact.body["root_matches_checkpoint"], true);
    assert!(intact.body["first_broken_position"].is_null());
    assert!(checkpoint["tree_size"].as_u64() >= Some(4));

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
    // The server's own verification names the same event and sees the root differ.
    let broken_position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY transaction_id, global_position OFFSET 3 LIMIT 1",
    )
    .fetch_one(app.pool())
    .await
    .expect("position");
    let report = app.get("/api/v1/audit/verify", &user).await;
    report.expect(200);
    assert_eq!(report.body["intact"], false);
    assert_eq!(report.body["first_broken_position"], broken_position);
    assert_eq!(report.body["root_matches_checkpoint"], false);
    app.stop().await;
}

/// Reads `{checkpoints, inclusions, consistency}` and prints what it accepted.
const PROOF_MAIN: &str = r#"
d = json.load(sys.stdin)
b = lambda s: base64.b64decode(s)
roots = {cp["tree_size"]: b(cp["root_hash"]) for cp in d["checkpoints"]}
out = {"checkpoints": [checkpoint_ok(cp) for cp in d["checkpoints"]],
       "inclusions": [verify_inclusion(p["log_index"], p["tree_size"], b(p["leaf_hash"]),
                                       [b(h) for h in p["hashes"]], roots[p["root_size"]])
                      for p in d["inclusions"]],
       "consistency": [verify_consistency(p["from"], p["to"], roots[p["from_root"]], roots[p["to_root"]],
                                          [b(h) for h in p["hashes"]]) for p in d["consistency"]]}
print(json.dumps(out))
"#;

#[tokio::test]
async fn checkpoints_and_proofs_verify_independently_and_corruption_is_refused() {
    let app = TestApp::start().await;
    let user = every_kind_of_command(&app).await;
    caught_up(&app).await;
    let first = wait_checkpoint(&app, &user, 10).await;
    let first_size = first["tree_size"].as_u64().expect("size");
    // The log grows; a later checkpoint.
    app.signup("later@audit.example", "Later").await;
    caught_up(&app).await;
    let second = wait_checkpoint(&app, &user, first_size + 1).await;
    let second_size = second["tree_size"].as_u64().expect("size");
    // The first is still served by size.
    let again = app
        .get(
            &format!("/api/v1/audit/checkpoint?tree_size={first_size}"),
            &user,
        )
        .await;
    again.expect(200);
    assert_eq!(again.body, first);

    let mut inclusions = Vec::new();
    for index in [0, 1, first_size / 2, first_size - 1, second_size - 1] {
        let proof = app
            .get(
                &format!("/api/v1/audit/proof/inclusion?log_index={index}&tree_size={second_size}"),
                &user,
            )
            .await;
        proof.expect(200);
        let mut proof = proof.body;
        proof["root_size"] = second_size.into();
        inclusions.push(proof);
    }
    let consistency = app
        .get(
            &format!("/api/v1/audit/proof/consistency?from={first_size}&to={second_size}"),
            &user,
        )
        .await;
    consistency.expect(200);
    let mut consistency = consistency.body;
    consistency["from_root"] = first_size.into();
    consistency["to_root"] = second_size.into();

    // Corruptions: a hash changed, a hash removed, the wrong size.
    let mut corrupt_inclusions = Vec::new();
    let base = inclusions[2].clone();
    let mut changed = base.clone();
    changed["hashes"][0] = serde_json::json!(STANDARD_ZERO);
    corrupt_inclusions.push(changed);
    let mut removed = base.clone();
    removed["hashes"].as_array_mut().expect("hashes").pop();
    corrupt_inclusions.push(removed);
    // The proof for the second tree, presented for the first (signed) tree.
    let mut wrong_size = base.clone();
    wrong_size["tree_size"] = first_size.into();
    wrong_size["root_size"] = first_size.into();
    corrupt_inclusions.push(wrong_size);
    let mut corrupt_consistency = Vec::new();
    let mut changed = consistency.clone();
    changed["hashes"][0] = serde_json::json!(STANDARD_ZERO);
    corrupt_consistency.push(changed);
    let mut removed = consistency.clone();
    removed["hashes"].as_array_mut().expect("hashes").remove(0);
    corrupt_consistency.push(removed);
    let mut wrong_size = consistency.clone();
    wrong_size["from"] = (first_size - 1).into();
    corrupt_consistency.push(wrong_size);
    let mut forged = second.clone();
    forged["checkpoint"] = serde_json::json!(second["checkpoint"]
        .as_str()
        .expect("text")
        .replacen(&second_size.to_string(), &(second_size + 1).to_string(), 1));
    forged["tree_size"] = (second_size + 1).into();

    let all_inclusions: Vec<&Value> = inclusions.iter().chain(&corrupt_inclusions).collect();
    let all_consistency: Vec<&Value> = std::iter::once(&consistency)
        .chain(&corrupt_consistency)
        .collect();
    let input = serde_json::json!({
        "checkpoints": [first, second, forged],
        "inclusions": all_inclusions,
        "consistency": all_consistency,
    });
    let script = format!("{RFC_9162_PY}{PROOF_MAIN}");
    let (ok, stdout, stderr) = pulsar_tests::python(&script, input.to_string().as_bytes());
    assert!(
        ok,
        "the verifier failed (the test setup installs cryptography): {stderr}"
    );
    let verdict: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        verdict["checkpoints"],
        serde_json::json!([true, true, false])
    );
    let n = inclusions.len();
    let accepted: Vec<bool> = verdict["inclusions"]
        .as_array()
        .expect("inclusions")
        .iter()
        .map(|v| v.as_bool().expect("bool"))
        .collect();
    assert!(accepted[..n].iter().all(|ok| *ok), "{accepted:?}");
    assert!(
        accepted[n..].iter().all(|ok| !ok),
        "corrupted accepted: {accepted:?}"
    );
    assert_eq!(
        verdict["consistency"],
        serde_json::json!([true, false, false, false])
    );

    // Bad input is refused with the documented statuses.
    for (path, status) in [
        ("/api/v1/audit/proof/inclusion?log_index=0", 400),
        ("/api/v1/audit/proof/inclusion?log_index=x&tree_size=1", 400),
        (
            "/api/v1/audit/proof/inclusion?log_index=0&tree_size=1&extra=1",
            400,
        ),
        ("/api/v1/audit/proof/inclusion?log_index=5&tree_size=5", 422),
        (
            "/api/v1/audit/proof/inclusion?log_index=0&tree_size=999999999",
            422,
        ),
        ("/api/v1/audit/proof/consistency?from=0&to=3", 422),
        ("/api/v1/audit/proof/consistency?from=4&to=3", 422),
        ("/api/v1/audit/checkpoint?tree_size=999999999", 404),
    ] {
        app.get(path, &user).await.expect(status);
    }
    app.stop().await;
}

/// A 32-byte hash that is none of the tree's (base64 of zeros).
const STANDARD_ZERO: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[tokio::test]
async fn events_page_and_stream_the_workspace_history_in_commit_order() {
    let app = TestApp::start().await;
    let user = every_kind_of_command(&app).await;
    caught_up(&app).await;

    // Paging with `after` visits every event of the workspace once, in commit order.
    let mut paged: Vec<Value> = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(after) => format!("/api/v1/audit/events?limit=7&after={after}"),
            None => "/api/v1/audit/events?limit=7".to_string(),
        };
        let page = app.get(&path, &user).await;
        page.expect(200);
        paged.extend(page.body["data"].as_array().expect("data").iter().cloned());
        match page.body["meta"]["next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let expected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_leaves WHERE workspace_id = $1")
            .bind(&user.workspace_id)
            .fetch_one(app.pool())
            .await
            .expect("count");
    assert_eq!(paged.len() as i64, expected);
    assert!(paged.len() > 10);
    assert!(paged
        .windows(2)
        .all(|w| w[0]["log_index"].as_i64() < w[1]["log_index"].as_i64()));
    for entry in &paged {
        assert_eq!(
            entry["metadata"]["workspace_id"],
            user.workspace_id.as_str()
        );
        // The hash is the leaf of the entry's canonical bytes.
        let mut body = entry.clone();
        body.as_object_mut().expect("object").remove("hash");
        let leaf = merkle::leaf_hash(&serde_json::to_vec(&body).expect("bytes"));
        assert_eq!(entry["hash"], hex::encode(leaf));
    }

    // The NDJSON stream gives the same entries.
    let streamed = app
        .call(
            "GET",
            "/api/v1/audit/events",
            Some(&user.token),
            None,
            &[("accept", "application/x-ndjson")],
        )
        .await;
    streamed.expect(200);
    assert_eq!(
        streamed.header("content-type"),
        Some("application/x-ndjson")
    );
    let lines: Vec<Value> = streamed
        .text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines, paged);

    // A key's slice, with who did each step and from where.
    let key_events = app
        .get("/api/v1/audit/events?aggregate_type=ApiKey", &user)
        .await;
    key_events.expect(200);
    let first = &key_events.body["data"][0];
    assert_eq!(first["event_type"], "ApiKeyCreated");
    for field in [
        "actor_type",
        "actor_id",
        "request_id",
        "client_ip",
        "user_agent",
    ] {
        assert!(first["metadata"][field].is_string(), "{field}: {first}");
    }
    let id = first["aggregate_id"].as_str().expect("id");
    let one = app
        .get(&format!("/api/v1/audit/events?aggregate_id={id}"), &user)
        .await;
    assert!(one.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|e| e["aggregate_id"] == id));

    // Another workspace sees none of it; bad input is refused.
    let other = app.signup("stranger@audit.example", "Stranger").await;
    caught_up(&app).await;
    let theirs = app.get("/api/v1/audit/events?limit=1000", &other).await;
    theirs.expect(200);
    assert!(theirs.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .all(|e| e["metadata"]["workspace_id"] == other.workspace_id.as_str()));
    for (path, status) in [
        ("/api/v1/audit/events?colour=red", 400),
        ("/api/v1/audit/events?limit=0", 400),
        ("/api/v1/audit/events?from=yesterday", 400),
        ("/api/v1/audit/events?after=abc", 400),
        ("/api/v1/audit/events?after=999999999", 422),
    ] {
        app.get(path, &user).await.expect(status);
    }
    app.stop().await;
}

/// A small populated log with a checkpoint covering it; returns the app and a user.
async fn populated() -> (TestApp, pulsar_tests::User) {
    let app = TestApp::start().await;
    let user = app.signup("tamper@audit.example", "Tamper").await;
    for n in 0..4 {
        app.post(
            "/api/v1/projects",
            &user,
            serde_json::json!({"name": format!("P{n}")}),
        )
        .await
        .expect(201);
    }
    caught_up(&app).await;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    wait_checkpoint(&app, &user, events as u64).await;
    let report = app.get("/api/v1/audit/verify", &user).await;
    assert_eq!(report.body["intact"], true, "{}", report.text);
    sqlx::query("ALTER TABLE events DISABLE TRIGGER USER")
        .execute(app.pool())
        .await
        .expect("disable trigger");
    (app, user)
}

async fn position_at(app: &TestApp, index: i64) -> i64 {
    sqlx::query_scalar("SELECT global_position FROM audit_leaves WHERE log_index = $1")
        .bind(index)
        .fetch_one(app.pool())
        .await
        .expect("position")
}

#[tokio::test]
async fn verify_names_a_deleted_a_reordered_event_and_a_changed_leaf() {
    // One event deleted.
    let (app, user) = populated().await;
    let deleted = position_at(&app, 4).await;
    sqlx::query("DELETE FROM events WHERE global_position = $1")
        .bind(deleted)
        .execute(app.pool())
        .await
        .expect("delete");
    let report = app.get("/api/v1/audit/verify", &user).await;
    assert_eq!(report.body["intact"], false);
    assert_eq!(report.body["first_broken_position"], deleted);
    assert_eq!(report.body["root_matches_checkpoint"], false);
    app.stop().await;

    // Two events swapped in the log order.
    let (app, user) = populated().await;
    let (a, b) = (position_at(&app, 3).await, position_at(&app, 5).await);
    sqlx::query("ALTER TABLE events ALTER COLUMN global_position SET GENERATED BY DEFAULT")
        .execute(app.pool())
        .await
        .expect("identity");
    sqlx::query(
        "UPDATE events SET global_position = CASE global_position WHEN $1 THEN -1 ELSE global_position END
          WHERE global_position = $1",
    )
    .bind(a)
    .execute(app.pool())
    .await
    .expect("park");
    sqlx::query("UPDATE events SET global_position = $1 WHERE global_position = $2")
        .bind(a)
        .bind(b)
        .execute(app.pool())
        .await
        .expect("move b");
    sqlx::query("UPDATE events SET global_position = $1 WHERE global_position = -1")
        .bind(b)
        .execute(app.pool())
        .await
        .expect("move a");
    let report = app.get("/api/v1/audit/verify", &user).await;
    assert_eq!(report.body["intact"], false);
    assert_eq!(report.body["first_broken_position"], a);
    assert_eq!(report.body["root_matches_checkpoint"], false);
    app.stop().await;

    // A stored leaf hash changed.
    let (app, user) = populated().await;
    sqlx::query("UPDATE audit_leaves SET leaf = sha256(leaf) WHERE log_index = 2")
        .execute(app.pool())
        .await
        .expect("change leaf");
    let report = app.get("/api/v1/audit/verify", &user).await;
    assert_eq!(report.body["intact"], false);
    assert_eq!(
        report.body["first_broken_position"],
        position_at(&app, 2).await
    );
    assert_eq!(report.body["root_matches_checkpoint"], false);
    app.stop().await;
}

#[tokio::test]
async fn a_keys_whole_life_comes_back_from_its_history_with_who_and_where() {
    let app = TestApp::start().await;
    let owner = app.signup("life@audit.example", "Life").await;
    let created = app
        .post(
            "/api/v1/api-keys",
            &owner,
            serde_json::json!({"name": "ci", "scopes": ["projects:read"]}),
        )
        .await;
    created.expect(201);
    let key = created.body["data"]["id"].as_str().expect("id").to_string();
    app.call(
        "PATCH",
        &format!("/api/v1/api-keys/{key}"),
        Some(&owner.token),
        Some(serde_json::json!({"scopes": ["projects:read", "projects:write"]})),
        &[
            ("x-request-id", "req-widen-1"),
            ("user-agent", "audit-test/1.0"),
        ],
    )
    .await
    .expect(200);
    app.post(
        &format!("/api/v1/api-keys/{key}/rotate"),
        &owner,
        serde_json::json!({"grace_period_hours": 1}),
    )
    .await
    .expect(200);
    app.delete(&format!("/api/v1/api-keys/{key}"), &owner)
        .await
        .expect(204);
    // Read right after the last write: read-your-writes holds for the history too.
    let history = app
        .get(&format!("/api/v1/api-keys/{key}/history"), &owner)
        .await;
    history.expect(200);
    let entries = history.body["data"].as_array().expect("entries");
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "ApiKeyCreated",
            "ApiKeyUpdated",
            "ApiKeyRotated",
            "ApiKeyRevoked"
        ]
    );
    for entry in entries {
        let meta = &entry["metadata"];
        assert_eq!(meta["actor_type"], "user");
        assert_eq!(meta["actor_id"], owner.user_id.as_str());
        for field in ["request_id", "client_ip", "user_agent"] {
            assert!(meta[field].is_string(), "{field}: {entry}");
        }
        assert_eq!(meta["workspace_id"], owner.workspace_id.as_str());
        assert!(entry["hash"].is_string());
    }
    assert_eq!(entries[1]["metadata"]["request_id"], "req-widen-1");
    assert_eq!(entries[1]["metadata"]["user_agent"], "audit-test/1.0");
    assert_eq!(
        entries[1]["payload"]["ApiKeyUpdated"]["settings"]["scopes"],
        serde_json::json!(["projects:read", "projects:write"]),
        "{}",
        entries[1]
    );
    // The same entries as the audit log's slice.
    let slice = app
        .get(&format!("/api/v1/audit/events?aggregate_id={key}"), &owner)
        .await;
    assert_eq!(&slice.body["data"], &history.body["data"]);
    app.stop().await;
}
