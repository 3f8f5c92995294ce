//! Server memory (DESIGN.md: RSS under 200 MiB at 10,000 keys and 1,000,000 events).
//!
//! Runs the real release binary (`pulsar serve`, API, projections and dispatcher in one
//! process) against its own durable cluster and reads the process's `VmRSS` and peak
//! `VmHWM` from `/proc` at each stage: idle after start, after 10,000 API keys created
//! through the API, after 1,000,000 task events appended to the log and projected (the
//! audit tree and the webhook fan-out follow them too), and after authenticated GETs
//! spread over all 10,000 keys.
//!
//! `cargo bench -p pulsar-tests --bench memory` (`BENCH_SECONDS`, `BENCH_EVENTS` to
//! change the 1,000,000).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pulsar_tests::bench::{bench_database, client, cpu_model, create, drive, fill_task_log, owner};
use serde_json::{json, Value};

const KEYS: usize = 10_000;

/// The release binary, built if needed (`cargo bench` builds only the bench itself).
fn release_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "pulsar-api",
            "--bin",
            "pulsar",
        ])
        .current_dir(&root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the release binary failed");
    root.join("target").join("release").join("pulsar")
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .expect("field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn report(what: &str, pid: u32, extra: &str) {
    let (rss, peak) = memory(pid);
    println!("| {what} | {rss:.1} MiB | {peak:.1} MiB | {extra} |");
}

#[tokio::main]
async fn main() {
    let events: i64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (url, _cluster) = bench_database("bench-memory-cluster");
    let binary = release_binary();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("address")
        .port();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-memory-data");
    let _ = std::fs::remove_dir_all(&data);
    let mut server = tokio::process::Command::new(&binary)
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("PULSAR_LISTEN", format!("127.0.0.1:{port}"))
        .env("PULSAR_DATA_DIR", &data)
        .env("PULSAR_LOG", "warn")
        .env("PULSAR_RATE_LIMIT_SCALE", "1000")
        .env("PULSAR_SECRET_KEY", "00".repeat(32))
        .env("PULSAR_AUDIT_SIGNING_KEY", "11".repeat(32))
        .kill_on_drop(true)
        .spawn()
        .expect("start pulsar");
    let pid = server.id().expect("pid");
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let started = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "pulsar did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "Server memory on {} (`pulsar serve`, release build)\n",
        cpu_model()
    );
    println!("| stage | RSS | peak RSS | notes |");
    println!("|---|---|---|---|");
    report(
        "idle after start",
        pid,
        "migrations applied, subscribers idle",
    );

    let (token, workspace) = owner(&http, &base, "memory@bench.example").await;
    let session: Value = http
        .get(format!("{base}/api/v1/auth/session"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    let user = session["principal"]["id"]
        .as_str()
        .expect("user id")
        .to_string();

    // 10,000 keys through the API, 32 at a time.
    let started = Instant::now();
    let keys = Arc::new(tokio::sync::Mutex::new(Vec::with_capacity(KEYS)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (http, base, token, workspace, keys, next) = (
                http.clone(),
                base.clone(),
                token.clone(),
                workspace.clone(),
                keys.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < KEYS {
                    let created = create(
                        &http,
                        &base,
                        &token,
                        &workspace,
                        "/api-keys",
                        json!({"name": "fleet", "scopes": ["projects:read", "tasks:read"]}),
                    )
                    .await;
                    let key = created["key"]
                        .as_str()
                        .unwrap_or_else(|| panic!("no key: {created}"))
                        .to_string();
                    keys.lock().await.push(key);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let keys: Arc<Vec<String>> = Arc::new(std::mem::take(&mut *keys.lock().await));
    report(
        &format!("{} API keys", keys.len()),
        pid,
        &format!(
            "created through the API in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );

    // 1,000,000 events, appended in bulk and projected by the server.
    let pool = sqlx::PgPool::connect(&url).await.expect("connect");
    let started = Instant::now();
    let total = fill_task_log(&pool, events, &workspace, &user).await;
    let appended = started.elapsed();
    let started = Instant::now();
    loop {
        let ready = http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .expect("readyz");
        if ready.status() == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "never caught up"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report(
        &format!("{total} events in the log, projected"),
        pid,
        &format!(
            "appended in {:.1} s, projected (read models, audit tree, fan-out) in {:.1} s",
            appended.as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    );

    // Authenticated reads spread over every key.
    let mut run = {
        let (http, base, keys) = (http.clone(), base.clone(), keys.clone());
        drive(move |client, n| {
            let key = keys[(client * 7919 + n * 31) % keys.len()].clone();
            let request = http
                .get(format!("{base}/api/v1/tasks?per_page=10"))
                .bearer_auth(key);
            async move {
                let response = request.send().await.expect("get");
                let ok = response.status() == 200;
                response.bytes().await.expect("body");
                ok
            }
        })
        .await
    };
    let p99 = run.quantile(0.99).as_secs_f64() * 1000.0;
    report(
        "after authenticated GETs over all keys",
        pid,
        &format!(
            "{:.0}/s, {} requests, {} errors, p99 {p99:.1} ms",
            run.per_second(),
            run.ops,
            run.errors,
        ),
    );
    server.start_kill().expect("stop pulsar");
    let _ = server.wait().await;
}
