//! The authentication fast path: key verification in process (target < 5 µs median,
//! no database round trip) and authenticated request throughput against a bare axum
//! handler measured in the same run (target ≥ 50%).
//!
//! `cargo bench -p pulsar-tests --bench auth` (`BENCH_SECONDS`, `BENCH_ONLY=verify,http`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use chrono::Utc;
use pulsar_api::application::authentication as auth;
use pulsar_api::runtime::{Role, Runtime};
use pulsar_api::{app, db, AppState, Config};
use pulsar_domain::keys::{self, NewKey};
use pulsar_domain::scopes::ScopeSet;
use pulsar_domain::workspace::Tier;
use pulsar_projections::key_table::{KeyEntry, KeyTable};
use pulsar_projections::subscription::SubscriptionConfig;
use pulsar_projections::Subscriptions;
use pulsar_tests::bench::{bench_database, client, cpu_model, drive, enabled, print_run, serve};
use serde_json::json;
use sqlx::PgPool;

const KEYS: usize = 10_000;

fn verification() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    // No database is touched: the pool is lazy and never used.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("lazy pool");
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let subscriptions = Subscriptions::new(pool.clone(), SubscriptionConfig::default(), stop_rx);
    let table = KeyTable::new();
    let mut issued = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let key = NewKey::generate();
        table.insert(KeyEntry {
            key_id: format!("key_{i}"),
            public_id: key.api_key.clone(),
            workspace_id: format!("ws_{}", i % 100),
            name: format!("key {i}"),
            secret_hash: key.secret_hash(),
            scopes: ScopeSet::parse(&["projects:read", "tasks:*"]).expect("scopes"),
            allowlist: vec![
                "10.0.0.0/8".parse().expect("cidr"),
                "2001:db8::/32".parse().expect("cidr"),
            ],
            tier: Tier::Pro,
            own_tier: None,
            expires_at: None,
            max_age_days: Some(90),
            created_at: Utc::now(),
            grace_period_ends_at: None,
            revoked: false,
            workspace_deleted: false,
        });
        issued.push(key.full());
    }
    let state = AppState::new(Config::default(), pool, subscriptions, table).expect("state");
    let ip: IpAddr = "10.1.2.3".parse().expect("ip");
    const BATCH: usize = 1000;
    let mut per_call = Vec::new();
    let started = Instant::now();
    let mut i = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        for _ in 0..BATCH {
            let key = &issued[i % KEYS];
            i = i.wrapping_add(7919);
            let parsed = keys::parse_full(key).expect("well formed");
            let entry = auth::verify_key(&state, parsed, ip).expect("verifies");
            std::hint::black_box(entry);
        }
        per_call.push(t.elapsed() / BATCH as u32);
    }
    per_call.sort();
    let q = |q: f64| per_call[((per_call.len() as f64 * q) as usize).min(per_call.len() - 1)];
    println!(
        "| key verification in process ({KEYS} keys: parse + checksum, lookup, SHA-256, constant-time compare, expiry, age, allowlist, scopes) | median {:.2} µs | p99 {:.2} µs | {} calls |",
        q(0.5).as_secs_f64() * 1e6,
        q(0.99).as_secs_f64() * 1e6,
        per_call.len() * BATCH
    );
}

async fn bare_query(State(pool): State<PgPool>) -> axum::Json<serde_json::Value> {
    let row: (String, String) = sqlx::query_as("SELECT id, name FROM api_keys LIMIT 1")
        .fetch_one(&pool)
        .await
        .expect("select");
    axum::Json(json!({"data": {"id": row.0, "name": row.1}}))
}

fn http() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _cluster) = bench_database("bench-cluster-auth");
    runtime.block_on(async move {
        let pool = db::connect(&url, 40).await.expect("connect");
        sqlx::query("DROP SCHEMA public CASCADE; CREATE SCHEMA public").execute(&pool).await.ok();
        let config = Config {
            db_pool_size: 40,
            // The throughput here is far above any tier's quota; this bench measures the
            // policy chain's cost, and the limiter still runs on every request.
            rate_limit_scale: 1000.0,
            ..Config::default()
        };
        let pulsar = Runtime::start(config, pool.clone(), Role::All).await.expect("runtime");
        let base = serve(app(pulsar.state.clone())).await;
        let http = client();
        let signup: serde_json::Value = http
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"email": "bench@example.com", "password": "bench password 1", "workspace_name": "Bench"}))
            .send().await.expect("signup").json().await.expect("json");
        let token = signup["token"].as_str().expect("token").to_string();
        let created: serde_json::Value = http
            .post(format!("{base}/api/v1/api-keys"))
            .bearer_auth(&token)
            .json(&json!({"name": "bench", "scopes": ["api-keys:read"], "rate_limit_tier": "enterprise", "ip_allowlist": ["127.0.0.0/8"]}))
            .send().await.expect("create").json().await.expect("json");
        let key = created["data"]["key"].as_str().expect("key").to_string();
        let key_id = created["data"]["id"].as_str().expect("id").to_string();

        let load = |url: String, bearer: Option<String>| {
            let http = http.clone();
            move |_: usize, _: usize| {
                let http = http.clone();
                let url = url.clone();
                let bearer = bearer.clone();
                async move {
                    let mut request = http.get(url);
                    if let Some(bearer) = bearer {
                        request = request.bearer_auth(bearer);
                    }
                    let response = request.send().await.expect("send");
                    let ok = response.status() == 200;
                    response.bytes().await.expect("body");
                    ok
                }
            }
        };
        let bare = serve(axum::Router::new().route("/hello", get(|| async { axum::Json(json!({"data": {"id": "x", "name": "hello"}})) }))).await;
        let mut bare_run = drive(load(format!("{bare}/hello"), None)).await;
        print_run("baseline: bare axum JSON handler", &mut bare_run, None);
        let bare_rate = bare_run.per_second();
        let query = serve(axum::Router::new().route("/q", get(bare_query)).with_state(pool.clone())).await;
        let mut query_run = drive(load(format!("{query}/q"), None)).await;
        print_run("baseline: bare axum handler + one sqlx SELECT", &mut query_run, Some(bare_rate));
        let mut health = drive(load(format!("{base}/healthz"), None)).await;
        print_run("Pulsar GET /healthz (middleware, no auth, no database)", &mut health, Some(bare_rate));
        let mut authed = drive(load(format!("{base}/api/v1/api-keys/{key_id}"), Some(key.clone()))).await;
        print_run("Pulsar GET /api/v1/api-keys/{id} with an API key (policy chain + one SELECT)", &mut authed, Some(bare_rate));
        println!(
            "\nauthenticated GET vs bare handler + one SELECT: {:.0}%",
            authed.per_second() / query_run.per_second() * 100.0
        );
        pulsar.stop().await;
    });
}

fn main() {
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!(
        "{} concurrent HTTP clients, {} s per phase\n",
        pulsar_tests::bench::CLIENTS,
        pulsar_tests::bench::seconds().as_secs()
    );
    println!("| what | throughput | p50 | p99 | operations | errors |");
    println!("|---|---|---|---|---|---|");
    if enabled("verify") {
        verification();
    }
    if enabled("http") {
        http();
    }
}
