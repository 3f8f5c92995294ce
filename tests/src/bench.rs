//! Shared benchmark machinery: closed-loop load from concurrent clients, latency
//! quantiles, a server on a free port, and the machine description the results carry.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const CLIENTS: usize = 32;

/// `BENCH_ONLY=get,patch` runs only those phases (all by default).
pub fn enabled(phase: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p == phase))
}

pub fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

pub struct Run {
    pub ops: usize,
    /// Answers that were not the expected status.
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    pub fn quantile(&mut self, q: f64) -> Duration {
        self.latencies.sort();
        let index = ((self.latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// Runs `op(client_index, iteration)` from `CLIENTS` tasks for the bench duration; `op`
/// says whether the answer was the expected one.
pub async fn drive<F, Fut>(op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    drive_with(CLIENTS, op).await
}

/// As [`drive`], from `clients` tasks.
pub async fn drive_with<F, Fut>(clients: usize, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let duration = seconds();
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
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

pub async fn serve(router: axum::Router) -> String {
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

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client")
}

pub fn print_run(what: &str, run: &mut Run, baseline: Option<f64>) {
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

pub fn cpu_model() -> String {
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

/// The database a bench runs against: `DATABASE_URL`, else a fresh **durable** (fsync
/// on) cluster under `target/<dir>`, which lives as long as the returned guard.
pub fn bench_database(dir: &str) -> (String, Option<pgcluster::Cluster>) {
    bench_database_with(dir, &[])
}

/// As [`bench_database`], with more server settings for its own cluster (e.g.
/// `shared_preload_libraries=pg_stat_statements` to count statements: it costs every
/// statement a little, so only the benchmark that counts loads it).
pub fn bench_database_with(dir: &str, settings: &[&str]) -> (String, Option<pgcluster::Cluster>) {
    if let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        return (url, None);
    }
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target")
        .join(dir);
    let _ = std::fs::remove_dir_all(&dir);
    let mut options = pgcluster::ClusterOptions::new(dir);
    options
        .settings
        .extend(settings.iter().map(|s| s.to_string()));
    let cluster = pgcluster::Cluster::start(&options).expect("cluster");
    (cluster.url("postgres"), Some(cluster))
}

/// Baseline: a bare axum handler answering a small JSON body over HTTP, driven by the
/// same clients as the real routes.
pub async fn baseline_axum() -> Run {
    let router = axum::Router::new().route(
        "/hello",
        axum::routing::get(|| async {
            axum::Json(serde_json::json!({"data": {"id": "x", "name": "hello"}}))
        }),
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

/// A Pulsar process on an empty schema of `url`, configured for load: a 40-connection
/// pool, warnings only, and rate limits scaled far above any tier (the limiter still
/// runs on every request).
pub async fn start_pulsar(url: &str) -> (sqlx::PgPool, pulsar_api::runtime::Runtime) {
    start_pulsar_with(url, bench_config()).await
}

/// The configuration [`start_pulsar`] uses.
pub fn bench_config() -> pulsar_api::Config {
    pulsar_api::Config {
        db_pool_size: 40,
        log: "warn".into(),
        rate_limit_scale: 1000.0,
        secret_key: Some("00".repeat(32)),
        audit_signing_key: Some("11".repeat(32)),
        ..pulsar_api::Config::default()
    }
}

/// As [`start_pulsar`], with `config`.
pub async fn start_pulsar_with(
    url: &str,
    config: pulsar_api::Config,
) -> (sqlx::PgPool, pulsar_api::runtime::Runtime) {
    let pool = pulsar_api::db::connect(url, config.db_pool_size)
        .await
        .expect("connect");
    // Two statements: a simple query, not a prepared one.
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        .execute(&pool)
        .await
        .expect("reset the schema");
    let runtime =
        pulsar_api::runtime::Runtime::start(config, pool.clone(), pulsar_api::runtime::Role::All)
            .await
            .expect("runtime");
    (pool, runtime)
}

/// The workspace and user [`fill_task_log`] writes as when not told otherwise.
pub const FILL_WORKSPACE: &str = "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f";
pub const FILL_USER: &str = "usr_00000000000000000000000000000001";

/// Writes `events` task events of workspace `ws` by user `user` straight into the log,
/// in the shapes the task aggregate writes (60% creations, 30% changes, 10% deletions;
/// 20,000 per transaction; titles with non-ASCII text), then `VACUUM ANALYZE`s it as a
/// log that has been around. Returns how many events the log holds.
pub async fn fill_task_log(pool: &sqlx::PgPool, events: i64, ws: &str, user: &str) -> i64 {
    let tasks = events * 6 / 10;
    let chunk = 20_000;
    let created = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Task', 'task_' || lpad(to_hex(i), 32, '0'), 1, 'TaskCreated', '1.0',
                jsonb_build_object('Created', jsonb_build_object('workspace_id', '{ws}',
                    'fields', jsonb_build_object('project_id', 'proj_00000000000000000000000000000001',
                        'title', 'Task number ' || i || ' — ünïcödé', 'description', 'Something to do about ' || (i % 97),
                        'status', 'todo', 'priority', 'medium', 'assignee_id', null, 'due_date', null,
                        'tags', jsonb_build_array('t' || (i % 10))),
                    'created_by', jsonb_build_object('type', 'user', 'id', '{user}'))),
                jsonb_build_object('actor_type', 'user', 'actor_id', '{user}',
                    'request_id', 'req_bench', 'client_ip', '127.0.0.1', 'user_agent', 'bench', 'workspace_id', '{ws}')
           FROM generate_series($1::bigint, $2::bigint) AS i"
    );
    let updated = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Task', 'task_' || lpad(to_hex(i), 32, '0'), 2, 'TaskUpdated', '1.0',
                jsonb_build_object('Updated', jsonb_build_object('workspace_id', '{ws}',
                    'fields', jsonb_build_object('project_id', 'proj_00000000000000000000000000000001',
                        'title', 'Task number ' || i || ' — ünïcödé', 'description', 'Something to do about ' || (i % 97),
                        'status', 'done', 'priority', 'high', 'assignee_id', null, 'due_date', null,
                        'tags', jsonb_build_array('t' || (i % 10))),
                    'changed', jsonb_build_array('status', 'priority'))),
                jsonb_build_object('actor_type', 'user', 'actor_id', '{user}',
                    'request_id', 'req_bench', 'client_ip', '127.0.0.1', 'user_agent', 'bench', 'workspace_id', '{ws}')
           FROM generate_series($1::bigint, $2::bigint) AS i"
    );
    let deleted = format!(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Task', 'task_' || lpad(to_hex(i), 32, '0'), 3, 'TaskDeleted', '1.0',
                jsonb_build_object('Deleted', jsonb_build_object('workspace_id', '{ws}')),
                jsonb_build_object('actor_type', 'user', 'actor_id', '{user}',
                    'request_id', 'req_bench', 'client_ip', '127.0.0.1', 'user_agent', 'bench', 'workspace_id', '{ws}')
           FROM generate_series($1::bigint, $2::bigint) AS i"
    );
    for (sql, count) in [
        (&created, tasks),
        (&updated, events * 3 / 10),
        (&deleted, events / 10),
    ] {
        let mut from = 1;
        while from <= count {
            let to = (from + chunk - 1).min(count);
            sqlx::query(sql)
                .bind(from)
                .bind(to)
                .execute(pool)
                .await
                .expect("append");
            from = to + 1;
        }
    }
    // As a log that has been around: hint bits set, statistics current.
    sqlx::query("VACUUM ANALYZE events")
        .execute(pool)
        .await
        .expect("vacuum");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .expect("count");
    total
}

/// Signs up and makes an enterprise workspace: (token, workspace id).
pub async fn owner(client: &reqwest::Client, base: &str, email: &str) -> (String, String) {
    let signup: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(&serde_json::json!({"email": email, "password": "bench password 1", "workspace_name": "Bench"}))
        .send()
        .await
        .expect("signup")
        .json()
        .await
        .expect("json");
    let token = signup["token"].as_str().expect("token").to_string();
    let workspace: serde_json::Value = client
        .post(format!("{base}/api/v1/workspaces"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "Bench", "tier": "enterprise"}))
        .send()
        .await
        .expect("workspace")
        .json()
        .await
        .expect("json");
    let workspace_id = workspace["data"]["id"]
        .as_str()
        .expect("workspace id")
        .to_string();
    (token, workspace_id)
}

/// POSTs `body` to `path` (under `/api/v1`) as `token` in `workspace_id`; returns the
/// answer's `data`.
pub async fn create(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    workspace_id: &str,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let answer: serde_json::Value = client
        .post(format!("{base}/api/v1{path}"))
        .bearer_auth(token)
        .header("x-workspace-id", workspace_id)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    answer["data"].clone()
}
