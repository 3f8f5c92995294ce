//! The audit log's costs (DESIGN.md targets: verify 1,000,000 events in under 30 s,
//! an inclusion proof in under 5 ms, export at 100,000 events/s or more, and nothing
//! added to the write path).
//!
//! 1. Write path: `POST /contacts` from 32 clients with the `audit_log` subscriber held
//!    off (another session holds its lock, as a second projector would) and then live,
//!    twice, in one run; and how long the held-off subscriber takes to catch up.
//! 2. A log of `BENCH_EVENTS` (default 1,000,000) task events written straight into the
//!    store: building the tree over it (baseline: only reading it through the log
//!    reader), verifying it (`pulsar audit verify`'s code), exporting it whole and
//!    filtered (with a proof per event), and proofs over HTTP against a bare axum
//!    handler in the same run.
//!
//! `cargo bench -p pulsar-tests --bench audit` (uses `DATABASE_URL` when set, else a
//! durable throwaway cluster under target/). `BENCH_SECONDS` sets each load phase;
//! `BENCH_ONLY=write` or `BENCH_ONLY=log` runs one part.

use std::io::Write;
use std::time::{Duration, Instant};

use pulsar_api::app;
use pulsar_api::application::{audit, audit_export};
use pulsar_projections::audit::{AuditLog, EventFilter};
use pulsar_projections::{log, Position, Projection};
use pulsar_tests::bench::{
    baseline_axum, bench_config, bench_database, client, cpu_model, drive, drive_with, enabled,
    fill_task_log, owner, print_run, seconds, serve, start_pulsar, FILL_USER, FILL_WORKSPACE,
};
use serde_json::json;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _cluster) = bench_database("bench-audit-cluster");
    runtime.block_on(run(&url));
}

async fn run(url: &str) {
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!("{} s per load phase, fsync on\n", seconds().as_secs());
    if enabled("write") {
        write_path(url).await;
    }
    if enabled("log") {
        big_log(url).await;
    }
}

const AUDIT_LOCK: &str = "hashtextextended('pulsar.subscription.' || 'audit_log', 0)";

/// Waits until the audit tree holds every event; returns how long that took.
async fn audit_caught_up(pool: &sqlx::PgPool) -> Duration {
    let started = Instant::now();
    loop {
        let behind: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM events) - (SELECT count(*) FROM audit_leaves)",
        )
        .fetch_one(pool)
        .await
        .expect("behind");
        if behind == 0 {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write_path(url: &str) {
    let (pool, pulsar) = start_pulsar(url).await;
    let base = serve(app(pulsar.state.clone())).await;
    let client = client();
    let (token, workspace_id) = owner(&client, &base, "writes@bench.example").await;
    println!("### Write path: the tree is built after commit\n");
    println!("| what | throughput | p50 | p99 | operations | errors |");
    println!("|---|---|---|---|---|---|");
    for round in 1..=2 {
        for held_off in [true, false] {
            let mut holder = None;
            if held_off {
                let mut conn = pool.acquire().await.expect("conn");
                sqlx::query(&format!("SELECT pg_advisory_lock({AUDIT_LOCK})"))
                    .execute(&mut *conn)
                    .await
                    .expect("lock");
                holder = Some(conn);
            }
            let (client, base, token, workspace_id) = (
                client.clone(),
                base.clone(),
                token.clone(),
                workspace_id.clone(),
            );
            let mut run = drive(move |c, i| {
                let (client, token, workspace_id) =
                    (client.clone(), token.clone(), workspace_id.clone());
                let url = format!("{base}/api/v1/contacts");
                async move {
                    let response = client
                        .post(url)
                        .bearer_auth(token)
                        .header("x-workspace-id", workspace_id)
                        .json(&json!({"name": format!("Contact {round}-{held_off}-{c}-{i}")}))
                        .send()
                        .await
                        .expect("post");
                    let ok = response.status() == 201;
                    response.bytes().await.expect("body");
                    ok
                }
            })
            .await;
            let what = if held_off {
                "POST /contacts, audit subscriber held off"
            } else {
                "POST /contacts, audit subscriber live"
            };
            print_run(&format!("{what} (round {round})"), &mut run, None);
            if let Some(mut conn) = holder {
                sqlx::query(&format!("SELECT pg_advisory_unlock({AUDIT_LOCK})"))
                    .execute(&mut *conn)
                    .await
                    .expect("unlock");
                drop(conn);
                let took = audit_caught_up(&pool).await;
                println!(
                    "| audit subscriber catching up on {} events after the hold | {:.2} s | | | | |",
                    run.ops,
                    took.as_secs_f64()
                );
            } else {
                audit_caught_up(&pool).await;
            }
        }
    }
    println!();
    pulsar.stop().await;
}

/// Counts what an export writes.
#[derive(Default)]
struct Counting(u64);

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn row(what: &str, events: u64, took: Duration, note: &str) {
    println!(
        "| {what} | {events} | {:.2} s | {:.0} | {note} |",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64().max(1e-9)
    );
}

async fn big_log(url: &str) {
    let events: i64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pool = pulsar_api::db::connect(url, 8).await.expect("connect");
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .execute(&pool)
        .await
        .expect("reset");
    pulsar_api::db::migrate(&pool).await.expect("migrate");
    let started = Instant::now();
    let total = fill_task_log(&pool, events, FILL_WORKSPACE, FILL_USER).await as u64;
    println!(
        "### A log of {total} events (written in {:.1} s)\n",
        started.elapsed().as_secs_f64()
    );
    println!("| what | events | time | events/s | note |");
    println!("|---|---|---|---|---|");

    // Baseline: reading the log through the log reader, as the subscriber does.
    let started = Instant::now();
    let mut conn = pool.acquire().await.expect("conn");
    let mut position = Position::ZERO;
    loop {
        let batch = log::read_after(&mut conn, position, 5_000)
            .await
            .expect("read");
        let Some(last) = batch.last() else { break };
        position = last.position;
    }
    drop(conn);
    row(
        "baseline: read through the log reader, 5,000 per batch",
        total,
        started.elapsed(),
        "",
    );

    // The tree: what the audit_log subscriber does, batch by batch, in transactions.
    let started = Instant::now();
    let mut position = Position::ZERO;
    loop {
        let mut tx = pool.begin().await.expect("begin");
        let batch = log::read_after(&mut tx, position, 5_000)
            .await
            .expect("read");
        let Some(last) = batch.last() else { break };
        position = last.position;
        AuditLog.apply_batch(&mut tx, &batch).await.expect("apply");
        tx.commit().await.expect("commit");
    }
    row(
        "audit tree: canonical bytes, leaves and subtree roots stored",
        total,
        started.elapsed(),
        "after commit, off the write path",
    );
    let names: Vec<String> = pulsar_api::runtime::READ_MODELS
        .iter()
        .chain(&[
            pulsar_projections::audit::NAME,
            pulsar_dispatcher::fanout::NAME,
        ])
        .map(|n| n.to_string())
        .collect();
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, last_transaction_id, last_global_position)
         SELECT n, $2::text::xid8, $3 FROM unnest($1::text[]) AS n
         ON CONFLICT (name) DO UPDATE SET last_transaction_id = excluded.last_transaction_id,
                                          last_global_position = excluded.last_global_position",
    )
    .bind(&names)
    .bind(position.transaction_text())
    .bind(position.global_position)
    .execute(&pool)
    .await
    .expect("checkpoints at the head");
    let config = bench_config();
    let signer = audit::Signer::from_config(&config).expect("signer");
    let size = audit::checkpoint_if_grown(&pool, &signer)
        .await
        .expect("checkpoint")
        .expect("a new checkpoint");

    // Verify: re-hash every event, both roots, the signature.
    let started = Instant::now();
    let report = audit_export::verify_log(&pool, None, |_| {})
        .await
        .expect("verify");
    assert!(report.ok, "{report:?}");
    let took = started.elapsed();
    row(
        "verify (`pulsar audit verify`): re-hash, recompute the signed root twice",
        report.log.events_checked,
        took,
        &format!("target < 30 s for 1,000,000: {:.1} s", took.as_secs_f64()),
    );

    // Export, whole and filtered.
    for (what, filter) in [
        (
            "export, the whole log (`pulsar audit export`)",
            EventFilter::default(),
        ),
        (
            "export, one event type (`--event-type TaskDeleted`), a proof per event",
            EventFilter {
                event_type: Some("TaskDeleted".into()),
                ..EventFilter::default()
            },
        ),
    ] {
        let mut out = Counting::default();
        let started = Instant::now();
        let summary = audit_export::export(&pool, filter, None, &mut out, |_| {})
            .await
            .expect("export");
        row(
            what,
            summary.events,
            started.elapsed(),
            &format!("{:.0} MB written", out.0 as f64 / 1e6),
        );
    }
    println!();

    // Proofs over HTTP against the bare handler.
    let pulsar =
        pulsar_api::runtime::Runtime::start(config, pool.clone(), pulsar_api::runtime::Role::All)
            .await
            .expect("runtime");
    let base = serve(app(pulsar.state.clone())).await;
    let client = client();
    let (token, workspace_id) = owner(&client, &base, "proofs@bench.example").await;
    println!("### Proofs over HTTP, tree of {size} leaves\n");
    println!("| what | throughput | p50 | p99 | operations | errors |");
    println!("|---|---|---|---|---|---|");
    let mut bare = baseline_axum().await;
    let bare_rate = bare.per_second();
    print_run("baseline: bare axum handler, small JSON", &mut bare, None);
    let proof = |path: &'static str, clients: usize| {
        let (client, base, token, workspace_id) = (
            client.clone(),
            base.clone(),
            token.clone(),
            workspace_id.clone(),
        );
        drive_with(clients, move |c, i| {
            // Spread over the whole tree without a random number generator.
            let n = (i as u64 * 2_654_435_761 + c as u64 * 40_503) % size;
            let query = match path {
                "inclusion" => format!("log_index={n}&tree_size={size}"),
                _ => format!("from={}&to={size}", n.max(1)),
            };
            let url = format!("{base}/api/v1/audit/proof/{path}?{query}");
            let (client, token, workspace_id) =
                (client.clone(), token.clone(), workspace_id.clone());
            async move {
                let response = client
                    .get(url)
                    .bearer_auth(token)
                    .header("x-workspace-id", workspace_id)
                    .send()
                    .await
                    .expect("get");
                let ok = response.status() == 200;
                response.bytes().await.expect("body");
                ok
            }
        })
    };
    let mut one = proof("inclusion", 1).await;
    print_run(
        "GET /audit/proof/inclusion, 1 client (latency)",
        &mut one,
        None,
    );
    let mut many = proof("inclusion", pulsar_tests::bench::CLIENTS).await;
    print_run(
        "GET /audit/proof/inclusion, 32 clients",
        &mut many,
        Some(bare_rate),
    );
    let mut consistency = proof("consistency", 1).await;
    print_run(
        "GET /audit/proof/consistency, 1 client (latency)",
        &mut consistency,
        None,
    );
    pulsar.stop().await;
}
