//! Commands per second end to end, with read-your-writes, and the projection lag under
//! that load, against baselines measured in the same run on the same machine:
//! raw PostgreSQL inserts into an events-shaped table and a bare axum handler.
//!
//! `cargo bench -p pulsar-tests --bench commands` (uses `DATABASE_URL` when set, else a
//! durable throwaway cluster under target/). `BENCH_SECONDS` sets each phase's length.

use std::sync::Arc;

use pulsar_api::app;
use pulsar_tests::bench::{
    baseline_axum, bench_database_with, client, cpu_model, drive, enabled, print_run, seconds,
    serve, start_pulsar, Run, CLIENTS,
};
use serde_json::json;
use sqlx::PgPool;

async fn baseline_inserts(pool: &PgPool) -> Run {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING INDEXES)",
    )
    .execute(pool)
    .await
    .expect("bench table");
    let pool = pool.clone();
    drive(move |client, i| {
        let pool = pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 VALUES ('Bench', $1, $2, 'Benched', '1.0', '{\"name\": \"x\"}', '{\"actor_id\": \"bench\"}')",
            )
            .bind(format!("c{client}"))
            .bind(i as i64 + 1)
            .execute(&pool)
            .await
            .is_ok()
        }
    })
    .await
}

/// Statements one `PATCH /workspaces/{id}` costs, counted by `pg_stat_statements` over
/// 200 sequential commands, less what the same time costs idle (polling subscribers),
/// split into the request path and everything else (projector batches, notifications).
async fn statements_per_command(
    pool: &PgPool,
    client: &reqwest::Client,
    base: &str,
    user: &(String, String),
) {
    if sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await
        .is_err()
    {
        println!("(statements: pg_stat_statements is not loaded; skipped)");
        return;
    }
    const COMMANDS: usize = 200;
    let counts = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT query, calls FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_all(&pool)
        .await
        .expect("statements")
    };
    let total = |rows: &[(String, i64)]| rows.iter().map(|(_, c)| c).sum::<i64>();
    let reset = || async {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(pool)
            .await
            .expect("reset");
    };
    // Idle: what the same stretch of time costs with nothing to do.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    reset().await;
    let idle_started = std::time::Instant::now();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let idle = total(&counts(pool.clone()).await) as f64 / idle_started.elapsed().as_secs_f64();
    reset().await;
    let started = std::time::Instant::now();
    let (token, workspace) = user;
    for i in 0..COMMANDS {
        let response = client
            .patch(format!("{base}/api/v1/workspaces/{workspace}"))
            .bearer_auth(token)
            .json(&json!({"name": format!("Counted {i}")}))
            .send()
            .await
            .expect("patch");
        assert_eq!(response.status(), 200);
        response.bytes().await.expect("body");
    }
    // Let the projector finish its batches.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let rows = counts(pool.clone()).await;
    let all = (total(&rows) as f64 - idle * elapsed) / COMMANDS as f64;
    // The request path: the session, the aggregate's load, the append, the item.
    let request_path = |query: &str| {
        query.contains("FROM sessions s")
            || query.contains("LEFT JOIN snapshots s")
            || query.contains("INSERT INTO events")
            || query.contains("FROM workspaces w JOIN workspace_members m")
            || query.contains("FROM workspace_members WHERE workspace_id")
            || query.contains("FROM events WHERE aggregate_type = $1 AND aggregate_id = $2")
    };
    let path: i64 = rows
        .iter()
        .filter(|(q, _)| request_path(q))
        .map(|(_, c)| c)
        .sum();
    println!(
        "statements per PATCH /workspaces/{{id}} ({COMMANDS} sequential, idle {idle:.1}/s subtracted): {:.1} on the request path, {all:.1} in all",
        path as f64 / COMMANDS as f64
    );
    let mut top: Vec<&(String, i64)> = rows
        .iter()
        .filter(|(_, c)| *c as usize >= COMMANDS / 2)
        .collect();
    top.sort_by_key(|row| std::cmp::Reverse(row.1));
    for (query, calls) in top {
        let line: String = query.split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "  {:>5.2} per command: {}",
            *calls as f64 / COMMANDS as f64,
            line.chars().take(110).collect::<String>()
        );
    }
    println!();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _cluster) = bench_database_with(
        "bench-cluster",
        &["shared_preload_libraries=pg_stat_statements"],
    );
    runtime.block_on(async move {
        let (pool, pulsar) = start_pulsar(&url).await;
        println!("machine: {} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
        println!("{CLIENTS} concurrent clients, {} s per phase, fsync on\n", seconds().as_secs());
        println!("| what | throughput | p50 | p99 | operations | errors |");
        println!("|---|---|---|---|---|---|");
        let mut insert_rate = None;
        if enabled("inserts") {
            let mut inserts = baseline_inserts(&pool).await;
            print_run("baseline: raw one-row INSERT transactions (events shape)", &mut inserts, None);
            insert_rate = Some(inserts.per_second());
        }
        let mut bare_rate = None;
        if enabled("axum") {
            let mut bare = baseline_axum().await;
            print_run("baseline: bare axum JSON handler over HTTP", &mut bare, None);
            bare_rate = Some(bare.per_second());
        }

        let base = serve(app(pulsar.state.clone())).await;
        let client = client();
        // One user and workspace per client, so clients do not contend on one aggregate.
        let mut users = Vec::new();
        for i in 0..CLIENTS {
            let response: serde_json::Value = client
                .post(format!("{base}/api/v1/auth/signup"))
                .json(&json!({"email": format!("bench{i}@example.com"), "password": "bench password 1", "workspace_name": format!("Bench {i}")}))
                .send()
                .await
                .expect("signup")
                .json()
                .await
                .expect("json");
            let token = response["token"].as_str().expect("token").to_string();
            let workspace = response["primaryWorkspace"]["id"].as_str().expect("ws").to_string();
            users.push((token, workspace));
        }
        let users = Arc::new(users);
        if enabled("statements") {
            statements_per_command(&pool, &client, &base, &users[0]).await;
        }
        let timeouts_before = pulsar.state.metrics.consistency_timeouts_total.load(std::sync::atomic::Ordering::Relaxed);
        if enabled("patch") {
        let mut renames = {
            let client = client.clone();
            let base = base.clone();
            let users = users.clone();
            drive(move |c, i| {
                let client = client.clone();
                let (token, workspace) = users[c].clone();
                let url = format!("{base}/api/v1/workspaces/{workspace}");
                async move {
                    let response = client
                        .patch(url)
                        .bearer_auth(token)
                        .json(&json!({"name": format!("Bench {c} rev {i}")}))
                        .send()
                        .await
                        .expect("patch");
                    let ok = response.status() == 200;
                    response.bytes().await.expect("body");
                    ok
                }
            })
            .await
        };
        print_run("PATCH /workspaces/{id} (1 event, read-your-writes)", &mut renames, insert_rate);
        }
        if enabled("create") {
        let mut creates = {
            let client = client.clone();
            let base = base.clone();
            let users = users.clone();
            drive(move |c, _| {
                let client = client.clone();
                let token = users[c].0.clone();
                let url = format!("{base}/api/v1/workspaces");
                async move {
                    let response = client
                        .post(url)
                        .bearer_auth(token)
                        .json(&json!({"name": "Bench workspace"}))
                        .send()
                        .await
                        .expect("post");
                    let ok = response.status() == 201;
                    if !ok {
                        eprintln!("create: {} {}", response.status(), response.text().await.unwrap_or_default());
                        return false;
                    }
                    response.bytes().await.expect("body");
                    ok
                }
            })
            .await
        };
        print_run("POST /workspaces (2 events + slug claim, read-your-writes)", &mut creates, insert_rate);
        }
        if enabled("get") {
        let mut reads = {
            let client = client.clone();
            let base = base.clone();
            let users = users.clone();
            drive(move |c, _| {
                let client = client.clone();
                let (token, workspace) = users[c].clone();
                let url = format!("{base}/api/v1/workspaces/{workspace}");
                async move {
                    let response = client.get(url).bearer_auth(token).send().await.expect("get");
                    let ok = response.status() == 200;
                    response.bytes().await.expect("body");
                    ok
                }
            })
            .await
        };
        print_run("GET /workspaces/{id} (session auth)", &mut reads, bare_rate);
        }
        let timeouts = pulsar.state.metrics.consistency_timeouts_total.load(std::sync::atomic::Ordering::Relaxed) - timeouts_before;
        let (p50, p99) = pulsar
            .state
            .subscriptions
            .with_lag("identity", |lag| (lag.quantile_upper_bound(0.5), lag.quantile_upper_bound(0.99)))
            .unwrap_or((None, None));
        println!();
        println!("projection lag (append → applied, identity subscriber, whole run): p50 ≤ {} ms, p99 ≤ {} ms", p50.unwrap_or(0.0), p99.unwrap_or(0.0));
        println!("read-your-writes waits that timed out: {timeouts}");
        for status in pulsar.state.subscriptions.statuses() {
            println!("subscriber {}: {:?}, {} events applied, {} failures", status.name, status.state, status.events_applied, status.failures_total);
        }
        pulsar.stop().await;
    });
}
