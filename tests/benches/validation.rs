//! Bounded validation: a body with 60,000 distinct tags must be refused in about the time
//! of one with 30 (both are over the limit of 20), because the limit is checked before
//! any work that grows faster than the input. Each is sent one at a time over HTTP to a
//! real server; the 30-tag body is the same-run baseline.
//!
//! `cargo bench -p pulsar-tests --bench validation` (`BENCH_SECONDS` per body).

use std::time::{Duration, Instant};

use pulsar_tests::bench::{bench_database, client, cpu_model, seconds, serve, start_pulsar};
use serde_json::{json, Value};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let (url, _cluster) = bench_database("bench-validation");
    let (_pool, pulsar) = start_pulsar(&url).await;
    let base = serve(pulsar_api::app(pulsar.state.clone())).await;
    let client = client();
    let signup: Value = client
        .post(format!("{base}/api/v1/auth/signup"))
        .json(
            &json!({"email": "tags@bench.example", "password": "correct horse battery staple",
                      "workspace_name": "Tags"}),
        )
        .send()
        .await
        .expect("signup")
        .json()
        .await
        .expect("json");
    let token = signup["token"].as_str().expect("token").to_string();
    println!("machine: {}", cpu_model());
    println!("| body | size | refused with | p50 | p99 | requests |");
    println!("|---|---|---|---|---|---|");
    let bodies = [
        (
            "30 distinct tags",
            (0..30).map(|i| format!("tag{i}")).collect::<Vec<_>>(),
        ),
        (
            "60,000 distinct tags",
            (0..60_000).map(|i| format!("tag{i}")).collect(),
        ),
        ("20,000 copies of one tag", vec!["same".to_string(); 20_000]),
    ];
    for (what, tags) in bodies {
        let body = json!({"title": "t", "tags": tags}).to_string();
        let mut latencies = Vec::new();
        let mut status = 0;
        let deadline = Instant::now() + seconds();
        while Instant::now() < deadline || latencies.len() < 20 {
            let started = Instant::now();
            let response = client
                .post(format!("{base}/api/v1/documents"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("send");
            status = response.status().as_u16();
            response.bytes().await.expect("body");
            latencies.push(started.elapsed());
        }
        latencies.sort();
        let quantile = |q: f64| -> Duration {
            latencies[((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)]
        };
        println!(
            "| {what} | {:.1} KB | {status} | {:.2} ms | {:.2} ms | {} |",
            body.len() as f64 / 1024.0,
            quantile(0.5).as_secs_f64() * 1000.0,
            quantile(0.99).as_secs_f64() * 1000.0,
            latencies.len()
        );
    }
    pulsar.stop().await;
}
