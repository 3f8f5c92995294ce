//! Webhook delivery under load: commands writing events through the API while the
//! in-process dispatcher fans them out and delivers them, signed, to a local receiver.
//!
//! Reported: sustained deliveries per second at the receiver, and commit-to-receipt
//! latency (the event's `created_at`, its commit time to the millisecond, to the moment
//! the receiver reads the request) at p50 and p99. Baseline from the same run: the same
//! receiver driven directly by 64 HTTP clients with a body of the same size.
//!
//! `cargo bench -p pulsar-tests --bench webhooks` (uses `DATABASE_URL` when set, else a
//! durable throwaway cluster under target/). `BENCH_SECONDS` sets the load phase,
//! `BENCH_ENDPOINTS` how many endpoints subscribe to each event (default 4).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use pulsar_api::app;
use pulsar_tests::bench::{
    bench_config, bench_database, client, cpu_model, drive_with, owner, print_run, seconds, serve,
    start_pulsar_with, Run, CLIENTS,
};
use serde_json::{json, Value};

/// What the receiver saw: arrival instants and commit-to-receipt latencies.
#[derive(Default)]
struct Seen {
    arrivals: Vec<Instant>,
    latencies: Vec<Duration>,
}

async fn receive(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> &'static str {
    let now = chrono::Utc::now();
    let latency = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["created_at"].as_str().map(str::to_string))
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(&at).ok())
        .and_then(|at| (now - at.with_timezone(&chrono::Utc)).to_std().ok());
    let mut seen = seen.lock().expect("lock");
    seen.arrivals.push(Instant::now());
    if let Some(latency) = latency {
        seen.latencies.push(latency);
    }
    "ok"
}

async fn start_receiver() -> (String, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let router = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(Arc::clone(&seen));
    (serve(router).await, seen)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _cluster) = bench_database("bench-webhooks-cluster");
    let endpoints: usize = std::env::var("BENCH_ENDPOINTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4);
    runtime.block_on(async move {
        println!(
            "machine: {} cores, {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model()
        );
        println!(
            "{} s load, fsync on, {endpoints} endpoints per event\n",
            seconds().as_secs()
        );
        println!("| what | throughput | p50 | p99 | operations | errors |");
        println!("|---|---|---|---|---|---|");

        // Baseline: the bare receiver, driven directly.
        let (receiver, seen) = start_receiver().await;
        let sample = json!({"id": "evt_0123456789abcdef0123456789abcdef", "type": "contacts.created",
            "workspace_id": "ws_0123456789abcdef0123456789abcdef", "created_at": "2026-01-01T00:00:00.000Z",
            "data": {"id": "con_0123456789abcdef0123456789abcdef", "name": "Bench contact", "email": null,
                     "phone": null, "tags": [], "created_at": "2026-01-01T00:00:00.000Z", "version": 1}})
        .to_string();
        let bare = {
            let client = client();
            let target = format!("{receiver}/bare");
            drive_with(64, move |_, _| {
                let (client, target, body) = (client.clone(), target.clone(), sample.clone());
                async move {
                    let response = client.post(target).header("content-type", "application/json")
                        .body(body).send().await.expect("post");
                    response.status() == 200
                }
            })
            .await
        };
        let mut bare = bare;
        print_run("baseline: bare receiver, POSTed directly (64 clients)", &mut bare, None);
        let bare_rate = bare.per_second();
        *seen.lock().expect("lock") = Seen::default();

        let mut config = bench_config();
        config.webhooks.allow_cidrs = vec!["127.0.0.0/8".parse().expect("cidr")];
        config.webhooks.allow_http = true;
        config.webhooks.concurrency = 128;
        config.webhooks.poll_interval = Duration::from_millis(200);
        let (pool, pulsar) = start_pulsar_with(&url, config).await;
        let base = serve(app(pulsar.state.clone())).await;
        let client = client();
        let (token, workspace_id) = owner(&client, &base, "bench@example.com").await;
        for n in 0..endpoints {
            let created = client
                .post(format!("{base}/api/v1/webhooks"))
                .bearer_auth(&token)
                .header("x-workspace-id", &workspace_id)
                .json(&json!({"url": format!("{receiver}/e{n}"), "events": ["contacts.created"]}))
                .send().await.expect("webhook");
            assert_eq!(created.status(), 201, "{:?}", created.text().await);
        }

        // Saturated (32 clients), then a steady load the machine keeps up with easily.
        for clients in [CLIENTS, 4] {
            load(&client, &base, &token, &workspace_id, &seen, &pool, clients, endpoints, bare_rate).await;
        }
        pulsar.stop().await;
    });
}

/// Creates contacts from `clients` clients for the bench duration, waits until every
/// delivery they caused arrived, and prints both.
#[allow(clippy::too_many_arguments)]
async fn load(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    workspace_id: &str,
    seen: &Arc<Mutex<Seen>>,
    pool: &sqlx::PgPool,
    clients: usize,
    endpoints: usize,
    bare_rate: f64,
) {
    *seen.lock().expect("lock") = Seen::default();
    sqlx::query("TRUNCATE webhook_attempts")
        .execute(pool)
        .await
        .expect("truncate");
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries")
        .fetch_one(pool)
        .await
        .expect("count");
    let load_started = Instant::now();
    let mut creates: Run = {
        let (client, base, token, workspace_id) = (
            client.clone(),
            base.to_string(),
            token.to_string(),
            workspace_id.to_string(),
        );
        drive_with(clients, move |c, i| {
            let (client, token, workspace_id) =
                (client.clone(), token.clone(), workspace_id.clone());
            let url = format!("{base}/api/v1/contacts");
            async move {
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .header("x-workspace-id", workspace_id)
                    .json(&json!({"name": format!("Contact {clients}-{c}-{i}")}))
                    .send()
                    .await
                    .expect("post");
                let ok = response.status() == 201;
                response.bytes().await.expect("body");
                ok
            }
        })
        .await
    };
    let load = load_started.elapsed();
    print_run(
        &format!("POST /contacts while delivering ({clients} clients)"),
        &mut creates,
        None,
    );

    // Everything the load queued must arrive.
    let expected = creates.ops * endpoints;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("lock").arrivals.len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = load_started.elapsed();
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let received = seen.arrivals.len();
    let span = match (seen.arrivals.first(), seen.arrivals.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::from_secs(1),
    };
    let mut delivered = Run {
        ops: received,
        errors: expected.saturating_sub(received),
        elapsed: span,
        latencies: seen.latencies,
    };
    print_run(
        &format!("deliveries at the receiver, commit to receipt ({clients} clients, {endpoints} endpoints per event)"),
        &mut delivered,
        Some(bare_rate),
    );
    // Let the recorder write the last results.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (success, other): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'success'), count(*) FILTER (WHERE status <> 'success')
           FROM webhook_deliveries",
    )
    .fetch_one(pool).await.expect("count");
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_attempts")
        .fetch_one(pool)
        .await
        .expect("count");
    println!(
        "\nload {:.1} s, drained {:.1} s after start; {received} of {expected} delivered; \
         rows: {} new, {success} success in all, {other} other; {attempts} attempts\n",
        load.as_secs_f64(),
        drained.as_secs_f64(),
        success + other - before
    );
}
