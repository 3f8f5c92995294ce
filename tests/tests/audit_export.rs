//! `pulsar audit export` and `pulsar audit verify`, run as the real binary against a
//! test database, with an independent Python verifier (written from RFC 9162 and API.md,
//! not from the server's code) checking what the export holds.
//!
//! A test binary of its own: the 100,000-event export keeps both cores busy for tens of
//! seconds, and cargo runs test binaries one after another, so it never starves the
//! timing-sensitive tests of `it`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pulsar_tests::{every_kind_of_command, TestApp};
use serde_json::{json, Value};

use pulsar_tests::audit::{caught_up, wait_checkpoint, RFC_9162_PY};
use pulsar_tests::pulsar_binary;

/// Checks an export file: the checkpoint's signature, every event's leaf, the root of a
/// complete export (MTH from the RFC) or each inclusion proof of a filtered one, the
/// consistency proof from a saved checkpoint, and the end line. Prints `{ok, problem,
/// events, root}`.
const EXPORT_VERIFIER: &str = r#"
def leaf_of(entry):
    data = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(b"\x00" + data).digest()

def mth(leaves):
    n = len(leaves)
    if n == 0: return hashlib.sha256(b"").digest()
    if n == 1: return leaves[0]
    k = 1
    while k * 2 < n: k *= 2
    return node(mth(leaves[:k]), mth(leaves[k:]))

def check(path, saved):
    b = base64.b64decode
    lines = open(path, encoding="utf-8")
    first = json.loads(next(lines))
    cp = first.get("checkpoint")
    if cp is None or not checkpoint_ok(cp): return "checkpoint"
    if saved is not None and (not checkpoint_ok(saved) or saved["public_key"] != cp["public_key"]):
        return "saved checkpoint"
    size, root = cp["tree_size"], b(cp["root_hash"])
    leaves, consecutive, events, consistency_ok = [], True, 0, saved is None
    pending, unproved, end = None, False, None
    for line in lines:
        if end is not None: return "after end"
        obj = json.loads(line)
        if list(obj) == ["consistency"]:
            c = obj["consistency"]
            if saved is not None:
                if c["from"] != saved["tree_size"] or c["to"] != size: return "consistency sizes"
                if not verify_consistency(c["from"], c["to"], b(saved["root_hash"]), root,
                                          [b(h) for h in c["hashes"]]):
                    return "consistency"
                consistency_ok = True
        elif list(obj) == ["inclusion"]:
            p = obj["inclusion"]
            if pending is None: return "inclusion without event"
            index, leaf = pending
            pending = None
            if p["log_index"] != index or p["tree_size"] != size: return "inclusion sizes"
            if not verify_inclusion(index, size, leaf, [b(h) for h in p["hashes"]], root):
                return "inclusion"
        elif list(obj) == ["end"]:
            end = obj["end"]
        else:
            if pending is not None: unproved = True
            stated = obj.pop("hash")
            leaf = leaf_of(obj)
            if leaf.hex() != stated: return "leaf"
            index = obj["log_index"]
            if index >= size: return "beyond size"
            if consecutive and index == len(leaves): leaves.append(leaf)
            else: consecutive = False
            pending = (index, leaf)
            events += 1
    if pending is not None: unproved = True
    if end is None: return "no end"
    if end["events"] != events or end["tree_size"] != size: return "end counts"
    if not consistency_ok: return "no consistency proof"
    if end["complete"]:
        if not consecutive or len(leaves) != size or mth(leaves) != root: return "root"
    elif unproved:
        return "unproved event"
    return None

d = json.load(sys.stdin)
problem = check(d["path"], d.get("saved"))
print(json.dumps({"ok": problem is None, "problem": problem}))
"#;

fn verify_with_python(path: &Path, saved: Option<&Value>) -> Value {
    let input = json!({"path": path, "saved": saved});
    let script = format!("{RFC_9162_PY}{EXPORT_VERIFIER}");
    let (ok, stdout, stderr) = pulsar_tests::python(&script, input.to_string().as_bytes());
    assert!(ok, "the Python verifier crashed: {stderr}");
    serde_json::from_str(stdout.trim()).expect("verifier output")
}

/// A scratch directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-audit")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// `pulsar <args>` against `app`'s database: (success, stdout, stderr).
fn pulsar(app: &TestApp, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(pulsar_binary())
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("PULSAR_DATA_DIR", dir.join("data"))
        .env("PULSAR_LOG", "warn")
        .output()
        .expect("run pulsar");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `pulsar audit export <args> > path`.
fn export_to(app: &TestApp, dir: &Path, path: &Path, args: &[&str]) {
    let mut all = vec!["audit", "export"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = pulsar(app, dir, &all);
    assert!(ok, "export failed: {stderr}");
    std::fs::write(path, stdout).expect("write export");
}

fn offline_verify(app: &TestApp, dir: &Path, path: &Path, saved: Option<&Path>) -> (bool, Value) {
    let path = path.to_string_lossy().to_string();
    let mut args = vec!["audit", "verify", "--export", &path];
    let saved = saved.map(|s| s.to_string_lossy().to_string());
    if let Some(saved) = &saved {
        args.extend(["--checkpoint", saved]);
    }
    let (ok, stdout, stderr) = pulsar(app, dir, &args);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no report ({e}): {stdout} {stderr}"));
    (ok, report)
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .expect("read export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).expect("write");
}

#[tokio::test]
async fn filtered_exports_carry_proofs_and_every_corruption_is_refused_by_both_verifiers() {
    let app = TestApp::start().await;
    let user = every_kind_of_command(&app).await;
    let other = app.signup("other@export.example", "Other").await;
    caught_up(&app).await;
    let saved = wait_checkpoint(&app, &user, 10).await;
    let dir = scratch("filtered");
    let saved_path = dir.join("saved.json");
    std::fs::write(&saved_path, saved.to_string()).expect("save checkpoint");
    // The log grows past the saved checkpoint.
    app.post("/api/v1/projects", &other, json!({"name": "Later"}))
        .await
        .expect(201);
    app.post("/api/v1/projects", &user, json!({"name": "Later too"}))
        .await
        .expect(201);
    caught_up(&app).await;
    let saved_size = saved["tree_size"].as_u64().expect("size");
    let latest = wait_checkpoint(&app, &user, saved_size + 2).await;

    // One workspace's events, proved one by one, extending the saved checkpoint.
    let export = dir.join("workspace.ndjson");
    let saved_arg = saved_path.to_string_lossy().to_string();
    export_to(
        &app,
        &dir,
        &export,
        &[
            "--workspace-id",
            &user.workspace_id,
            "--checkpoint",
            &saved_arg,
        ],
    );
    let good = lines(&export);
    assert_eq!(good[0]["checkpoint"]["tree_size"], latest["tree_size"]);
    assert_eq!(good[1]["consistency"]["from"], saved_size);
    let events: Vec<&Value> = good.iter().filter(|l| l.get("hash").is_some()).collect();
    assert!(events.len() > 10);
    assert!(events
        .iter()
        .all(|e| e["metadata"]["workspace_id"] == user.workspace_id.as_str()));
    let proofs = good.iter().filter(|l| l.get("inclusion").is_some()).count();
    assert_eq!(proofs, events.len(), "one inclusion proof per event");
    assert_eq!(good.last().expect("end")["end"]["complete"], false);
    assert_eq!(verify_with_python(&export, Some(&saved))["ok"], true);
    let (ok, report) = offline_verify(&app, &dir, &export, Some(&saved_path));
    assert!(ok, "{report}");
    assert_eq!(report["events"], events.len());

    // Each corruption, checked by both verifiers.
    let first_proof = good
        .iter()
        .position(|l| {
            l.get("inclusion")
                .is_some_and(|p| p["hashes"].as_array().is_some_and(|h| h.len() >= 2))
        })
        .expect("a proof of two hashes or more");
    let first_event = good
        .iter()
        .position(|l| l.get("hash").is_some())
        .expect("an event");
    type Corruption = Box<dyn Fn(&mut Vec<Value>)>;
    let corruptions: Vec<(&str, Corruption)> = vec![
        (
            "one proof hash changed",
            Box::new(move |l| {
                let h = l[first_proof]["inclusion"]["hashes"][0]
                    .as_str()
                    .expect("hash")
                    .to_string();
                l[first_proof]["inclusion"]["hashes"][0] = flip(&h).into();
            }),
        ),
        (
            "one proof hash removed",
            Box::new(move |l| {
                l[first_proof]["inclusion"]["hashes"]
                    .as_array_mut()
                    .expect("hashes")
                    .pop();
            }),
        ),
        (
            "a proof for the wrong size",
            Box::new(move |l| {
                let size = l[first_proof]["inclusion"]["tree_size"]
                    .as_u64()
                    .expect("size");
                l[first_proof]["inclusion"]["tree_size"] = (size - 1).into();
            }),
        ),
        (
            "a consistency hash changed",
            Box::new(move |l| {
                let h = l[1]["consistency"]["hashes"][0]
                    .as_str()
                    .expect("hash")
                    .to_string();
                l[1]["consistency"]["hashes"][0] = flip(&h).into();
            }),
        ),
        (
            "a consistency hash removed",
            Box::new(move |l| {
                l[1]["consistency"]["hashes"]
                    .as_array_mut()
                    .expect("hashes")
                    .remove(0);
            }),
        ),
        (
            "an event's payload changed",
            Box::new(move |l| {
                l[first_event]["metadata"]["client_ip"] = "10.9.8.7".into();
            }),
        ),
        (
            "an event's proof dropped",
            Box::new(move |l| {
                l.remove(first_event + 1);
            }),
        ),
        (
            "the end cut off",
            Box::new(|l| {
                l.pop();
            }),
        ),
        (
            "the checkpoint's root changed",
            Box::new(|l| {
                let h = l[0]["checkpoint"]["root_hash"]
                    .as_str()
                    .expect("hash")
                    .to_string();
                l[0]["checkpoint"]["root_hash"] = flip(&h).into();
            }),
        ),
    ];
    for (what, corrupt) in &corruptions {
        let mut bad = good.clone();
        corrupt(&mut bad);
        let path = dir.join("corrupt.ndjson");
        write_lines(&path, &bad);
        let python = verify_with_python(&path, Some(&saved));
        assert_eq!(
            python["ok"], false,
            "{what}: the Python verifier accepted it"
        );
        let (ok, report) = offline_verify(&app, &dir, &path, Some(&saved_path));
        assert!(!ok, "{what}: pulsar audit verify accepted it: {report}");
        assert!(report["problem"].is_string(), "{what}: {report}");
    }

    // Against the database: the saved checkpoint is a prefix of today's log...
    let (ok, stdout, stderr) = pulsar(&app, &dir, &["audit", "verify", "--checkpoint", &saved_arg]);
    assert!(ok, "{stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["intact"], true);
    assert_eq!(report["saved"]["consistent"], true);
    assert_eq!(report["saved"]["root_matches_events"], true);
    // ...and a forged one (another root, re-signed by nobody) is not.
    let mut forged = saved.clone();
    let root = forged["root_hash"].as_str().expect("root").to_string();
    let flipped = flip(&root);
    forged["checkpoint"] = forged["checkpoint"]
        .as_str()
        .expect("text")
        .replace(&root, &flipped)
        .into();
    forged["root_hash"] = flipped.into();
    let forged_path = dir.join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).expect("write");
    let forged_arg = forged_path.to_string_lossy().to_string();
    let (ok, stdout, _) = pulsar(
        &app,
        &dir,
        &["audit", "verify", "--checkpoint", &forged_arg],
    );
    assert!(!ok);
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["saved"]["signature_valid"], false);
    assert_eq!(report["saved"]["consistent"], false);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same hash with one bit changed.
fn flip(hash: &str) -> String {
    let mut bytes = base64_decode(hash);
    bytes[0] ^= 1;
    base64_encode(&bytes)
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64")
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Runs `pulsar audit export` to `out` under Python, which reports the child's peak
/// resident memory (`ru_maxrss`, KiB).
const MEASURED_RUN: &str = r#"
import json, resource, subprocess, sys
d = json.load(sys.stdin)
with open(d["out"], "wb") as out:
    code = subprocess.run(d["args"], env=d["env"], stdout=out, stderr=subprocess.PIPE).returncode
print(json.dumps({"code": code, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"#;

fn measured_export(app: &TestApp, dir: &Path, out: &Path) -> u64 {
    let input = json!({
        "args": [pulsar_binary(), "audit", "export"],
        "env": {
            "DATABASE_URL": app.db.url,
            "PULSAR_DATA_DIR": dir.join("data"),
            "PULSAR_LOG": "warn",
            "PATH": std::env::var("PATH").unwrap_or_default(),
        },
        "out": out,
    });
    let (ok, stdout, stderr) = pulsar_tests::python(MEASURED_RUN, input.to_string().as_bytes());
    assert!(ok, "{stderr}");
    let run: Value = serde_json::from_str(stdout.trim()).expect("run report");
    assert_eq!(run["code"], 0, "export failed: {run}");
    run["maxrss_kib"].as_u64().expect("maxrss")
}

#[tokio::test]
async fn an_export_of_100k_events_streams_in_flat_memory_and_gives_the_signed_root() {
    const EVENTS: i64 = 100_000;
    let app = TestApp::start().await;
    let user = app.signup("big@export.example", "Big").await;
    caught_up(&app).await;
    let dir = scratch("big");
    // A small export first: the memory a short log takes.
    wait_checkpoint(&app, &user, 1).await;
    let small = dir.join("small.ndjson");
    let small_rss = measured_export(&app, &dir, &small);

    // 100,000 task events, written straight into the log in the task aggregate's shapes.
    let total =
        pulsar_tests::bench::fill_task_log(app.pool(), EVENTS, &user.workspace_id, &user.user_id)
            .await;
    assert!(total > EVENTS);
    let started = std::time::Instant::now();
    for _ in 0..1200 {
        let size: Option<i64> = sqlx::query_scalar("SELECT max(tree_size) FROM audit_checkpoints")
            .fetch_one(app.pool())
            .await
            .expect("size");
        if size == Some(total) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!(
        "audit tree and checkpoint of {total} events after {:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let export = dir.join("all.ndjson");
    let rss = measured_export(&app, &dir, &export);
    let bytes = std::fs::metadata(&export).expect("export").len();
    eprintln!("export (debug build) took {:?}", started.elapsed());
    let head: Value = serde_json::from_str(
        std::fs::read_to_string(&export)
            .expect("read")
            .lines()
            .next()
            .expect("first line"),
    )
    .expect("checkpoint line");
    assert_eq!(
        head["checkpoint"]["tree_size"], total,
        "the checkpoint covers the whole log"
    );
    eprintln!("export peak RSS: {small_rss} KiB for a few dozen events, {rss} KiB for {total} events ({bytes} bytes)");
    // Flat: 100,000 more events (tens of MB more output) cost at most a page's worth of
    // memory more than a few dozen.
    assert!(
        rss < small_rss + 32 * 1024,
        "peak RSS grew from {small_rss} KiB to {rss} KiB for an export of {bytes} bytes"
    );
    assert!(bytes > 40 * 1024 * 1024, "{bytes}");

    // The independent verifier recomputes the signed root from the leaves.
    let python = verify_with_python(&export, None);
    assert_eq!(python, json!({"ok": true, "problem": null}));
    let (ok, report) = offline_verify(&app, &dir, &export, None);
    assert!(ok, "{report}");
    assert_eq!(report["events"], total);
    assert_eq!(report["complete"], true);
    // And the database verifies as a whole.
    let (ok, stdout, stderr) = pulsar(&app, &dir, &["audit", "verify"]);
    assert!(ok, "{stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["events_checked"], total);
    assert_eq!(report["checkpoint_signature_valid"], true);
    app.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
