//! Commands per second end to end, with read-your-writes, and the projection lag under
//! that load, against baselines measured in the same run on the same machine:
//! raw PostgreSQL inserts into an events-shaped table and a bare axum handler.
//!
//! `cargo bench -p pulsar-tests --bench commands` (uses `DATABASE_URL` when set, else a
//! durable throwaway cluster under target/). `BENCH_SECONDS` sets each phase's length.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use pulsar_api::runtime::{Role, Runtime};
use pulsar_api::{app, db, Config};
use serde_json::json;
use sqlx::PgPool;

const CLIENTS: usize = 32;

/// `BENCH_ONLY=get,patch` runs only those phases (all by default).
fn enabled(phase: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p == phase))
}

fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

struct Run {
    ops: usize,
    /// Answers that were not the expected status.
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile(&mut self, q: f64) -> Duration {
        self.latencies.sort();
        let index = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// Runs `op(client_index, iteration)` from `CLIENTS` tasks for the bench duration; `op`
/// says whether the answer was the expected one.
async fn drive<F, Fut>(op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let duration = seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut i = 0;
                while started.elapsed() < duration {
                    let t = Instant::now();
                    if !op(client, i).await {
                        errors += 1;
                    }
                    latencies.push(t.elapsed());
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies.extend(l);
        errors += e;
    }
    Run {
        errors,
        ops: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("serve")
    });
    format!("http://{address}")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client")
}

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

async fn baseline_axum() -> Run {
    let router = axum::Router::new().route(
        "/hello",
        get(|| async { axum::Json(json!({"data": {"id": "x", "name": "hello"}})) }),
    );
    let base = serve(router).await;
    let client = client();
    drive(move |_, _| {
        let client = client.clone();
        let url = format!("{base}/hello");
        async move {
            let response = client.get(url).send().await.expect("send");
            let ok = response.status() == 200;
            response.bytes().await.expect("body");
            ok
        }
    })
    .await
}

fn print_run(what: &str, run: &mut Run, baseline: Option<f64>) {
    let rate = run.per_second();
    let share = baseline.map_or(String::new(), |b| {
        format!(" ({:.0}% of baseline)", rate / b * 100.0)
    });
    println!(
        "| {what} | {rate:.0}/s{share} | {:.2} ms | {:.2} ms | {} | {} |",
        run.quantile(0.5).as_secs_f64() * 1000.0,
        run.quantile(0.99).as_secs_f64() * 1000.0,
        run.ops,
        run.errors
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _cluster;
    let url = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => url,
        None => {
            let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bench-cluster");
            let _ = std::fs::remove_dir_all(&dir);
            let cluster =
                pgcluster::Cluster::start(&pgcluster::ClusterOptions::new(dir)).expect("cluster");
            let url = cluster.url("postgres");
            _cluster = cluster;
            url
        }
    };
    runtime.block_on(async move {
        let pool = db::connect(&url, 40).await.expect("connect");
        sqlx::query("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            .execute(&pool)
            .await
            .ok();
        let config = Config {
            db_pool_size: 40,
            log: "warn".into(),
            ..Config::default()
        };
        let pulsar = Runtime::start(config, pool.clone(), Role::All).await.expect("runtime");
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

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
