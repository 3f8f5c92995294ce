//! Rebuilding a read model from the log: 1,000,000 events into fresh tables (DESIGN.md:
//! under 60 s), with the same-run cost of only reading those events through the log
//! reader as the baseline.
//!
//! `cargo bench -p pulsar-tests --bench rebuild` (`BENCH_EVENTS`, default 1,000,000).
//!
//! The events are written straight into the log in the shapes the task aggregate
//! writes (60% creations, 30% changes, 10% deletions, 20,000 tasks per transaction);
//! no server runs, and the `tasks` subscriber's checkpoint is set at the head, as a
//! caught-up live projector would have left it.

use std::time::Instant;

use pulsar_projections::log;
use pulsar_projections::Position;
use pulsar_tests::bench::{bench_database, cpu_model, fill_task_log, FILL_USER, FILL_WORKSPACE};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let events: i64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let (url, _cluster) = bench_database("bench-rebuild");
    let pool = pulsar_api::db::connect(&url, 4).await.expect("connect");
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .execute(&pool)
        .await
        .expect("reset");
    pulsar_api::db::migrate(&pool).await.expect("migrate");
    println!("machine: {}", cpu_model());

    // The log: tasks created, then changed, then some deleted.
    let started = Instant::now();
    let tasks = events * 6 / 10;
    let total = fill_task_log(&pool, events, FILL_WORKSPACE, FILL_USER).await;
    println!(
        "log: {total} events written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sqlx::query(
        "INSERT INTO subscription_checkpoints (name, last_transaction_id, last_global_position)
         SELECT 'tasks', transaction_id, global_position FROM events
          ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .execute(&pool)
    .await
    .expect("checkpoint");

    // Baseline: reading the same events through the log reader, in the same batches.
    let started = Instant::now();
    let mut conn = pool.acquire().await.expect("conn");
    let mut position = Position::ZERO;
    let mut read = 0;
    loop {
        let batch = log::read_after_of_types(&mut conn, position, &["Task"], 5_000)
            .await
            .expect("read");
        let Some(last) = batch.last() else { break };
        position = last.position;
        read += batch.len();
    }
    drop(conn);
    let read_secs = started.elapsed().as_secs_f64();
    println!("| what | events | time | events/s |");
    println!("|---|---|---|---|");
    println!(
        "| baseline: read through the log reader, 5,000 per batch | {read} | {read_secs:.1} s | {:.0} |",
        read as f64 / read_secs
    );

    let reports = pulsar_api::runtime::rebuild(&pool, "tasks", |_| {})
        .await
        .expect("rebuild");
    let report = reports[0];
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&pool)
        .await
        .expect("rows");
    println!(
        "| `pulsar projections rebuild tasks`: replay into fresh tables, catch up, swap | {} | {:.1} s | {:.0} |",
        report.events,
        report.elapsed.as_secs_f64(),
        report.events as f64 / report.elapsed.as_secs_f64()
    );
    println!(
        "rows in tasks after the rebuild: {rows} (expected {})",
        tasks - events / 10
    );
}
