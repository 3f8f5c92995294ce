//! `/usage` over 30 days of hourly data for 1,000 keys (DESIGN.md: p99 under 100 ms),
//! and what metering costs an authenticated GET (under 5% against the same run with
//! `PULSAR_METER_USAGE=false`), with a bare axum handler as the same-run baseline.
//!
//! `cargo bench -p pulsar-tests --bench usage` (uses `DATABASE_URL` when set, else a
//! durable throwaway cluster under target/). `BENCH_SECONDS` sets each phase.

use pulsar_api::app;
use pulsar_tests::bench::{
    baseline_axum, bench_config, bench_database, client, cpu_model, create, drive_with, owner,
    print_run, seconds, serve, start_pulsar_with, Run,
};
use serde_json::{json, Value};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _cluster) = bench_database("bench-usage-cluster");
    runtime.block_on(run(&url));
}

/// GETs `url` with `token` in `workspace_id` from `clients` clients for the bench
/// duration.
async fn load(
    client: &reqwest::Client,
    url: String,
    token: &str,
    workspace_id: &str,
    clients: usize,
) -> Run {
    let (client, token, workspace_id) =
        (client.clone(), token.to_string(), workspace_id.to_string());
    drive_with(clients, move |_, _| {
        let (client, url, token, workspace_id) = (
            client.clone(),
            url.clone(),
            token.clone(),
            workspace_id.clone(),
        );
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
    .await
}

async fn run(url: &str) {
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!("{} s per phase, fsync on\n", seconds().as_secs());
    println!("| what | throughput | p50 | p99 | operations | errors |");
    println!("|---|---|---|---|---|---|");
    let mut bare = baseline_axum().await;
    let bare_rate = bare.per_second();
    print_run(
        "baseline: bare axum handler, small JSON (32 clients)",
        &mut bare,
        None,
    );

    // Metering on, then off, on the same data: authenticated GETs with an API key.
    // What metering adds to a request, measured alone: one `record` call.
    let usage = pulsar_api::application::usage::KeyUsage::default();
    let keys: Vec<String> = (0..1000).map(|k| format!("key_{k:032x}")).collect();
    let now = chrono::Utc::now();
    let started = std::time::Instant::now();
    const CALLS: usize = 2_000_000;
    for i in 0..CALLS {
        usage.record(
            &keys[i % keys.len()],
            "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f",
            now,
        );
    }
    let per_call = started.elapsed().as_secs_f64() / CALLS as f64;
    println!(
        "| `KeyUsage::record` alone, 1,000 keys (the metering on a request's path) | {:.0} ns per call | | | {CALLS} | 0 |",
        per_call * 1e9
    );

    // Alternated twice: this machine's run-to-run noise is larger than the effect.
    for meter in [true, false, true, false]
        .into_iter()
        .filter(|_| pulsar_tests::bench::enabled("meter"))
    {
        let mut config = bench_config();
        config.meter_usage = meter;
        let (_pool, pulsar) = start_pulsar_with(url, config).await;
        let base = serve(app(pulsar.state.clone())).await;
        let client = client();
        let email = "meter@bench.example";
        let (token, workspace_id) = owner(&client, &base, email).await;
        let key = create(
            &client,
            &base,
            &token,
            &workspace_id,
            "/api-keys",
            json!({"name": "reader", "scopes": ["projects:read"]}),
        )
        .await;
        let key = key["key"].as_str().expect("key").to_string();
        let mut run = load(
            &client,
            format!("{base}/api/v1/projects"),
            &key,
            &workspace_id,
            32,
        )
        .await;
        print_run(
            &format!(
                "GET /projects with an API key, metering {} (32 clients)",
                if meter { "on" } else { "off" }
            ),
            &mut run,
            Some(bare_rate),
        );
        pulsar.stop().await;
    }

    if !pulsar_tests::bench::enabled("query") {
        return;
    }
    // 30 days of hourly data for 1,000 keys: 720,000 minute rows, one per key and hour.
    let (pool, pulsar) = start_pulsar_with(url, bench_config()).await;
    let base = serve(app(pulsar.state.clone())).await;
    let client = client();
    let (token, workspace_id) = owner(&client, &base, "analyst@bench.example").await;
    let started = std::time::Instant::now();
    sqlx::query(
        "INSERT INTO usage_minutes (workspace_id, feature, api_key_id, minute, count)
         SELECT $1, 'api_calls', 'key_' || lpad(to_hex(k), 32, '0'), h, 1 + (k + extract(hour FROM h)::int) % 50
           FROM generate_series(1, 1000) AS k,
                generate_series(date_trunc('hour', now()) - interval '30 days',
                                date_trunc('hour', now()) - interval '1 hour', interval '1 hour') AS h",
    )
    .bind(&workspace_id)
    .execute(&pool)
    .await
    .expect("usage rows");
    sqlx::query("VACUUM ANALYZE usage_minutes, usage_hours, usage_days")
        .execute(&pool)
        .await
        .expect("vacuum");
    println!(
        "\n720,000 usage rows (1,000 keys x 30 days x 24 hours) written in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    println!("| what | throughput | p50 | p99 | operations | errors |");
    println!("|---|---|---|---|---|---|");
    // Hour-aligned bounds, as an analyst's day or month range is.
    let hour =
        chrono::DurationRound::duration_trunc(chrono::Utc::now(), chrono::TimeDelta::hours(1))
            .expect("hour");
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let from = format!("{}&to={}", at(hour - chrono::TimeDelta::days(30)), at(hour));
    let ten: Vec<String> = (1..=10).map(|k| format!("key_{k:032x}")).collect();
    for (what, query) in [
        (
            "one key, by day",
            format!("granularity=day&group_by=api_key&api_key_id=key_{:032x}", 7),
        ),
        (
            "ten keys, by day",
            format!(
                "granularity=day&group_by=api_key&api_key_id={}",
                ten.join(",")
            ),
        ),
        (
            "one key, by hour",
            format!(
                "granularity=hour&group_by=api_key&api_key_id=key_{:032x}",
                7
            ),
        ),
        ("all keys summed, by day", "granularity=day".to_string()),
        (
            "all keys summed, by day, tz=America/New_York",
            "granularity=day&tz=America/New_York".to_string(),
        ),
        (
            "all keys, by month and key",
            "granularity=month&group_by=api_key".to_string(),
        ),
    ] {
        let url = format!("{base}/api/v1/usage?from={from}&{query}");
        let sample: Value = client
            .get(&url)
            .bearer_auth(&token)
            .header("x-workspace-id", &workspace_id)
            .send()
            .await
            .expect("usage")
            .json()
            .await
            .expect("json");
        let rows = sample["data"].as_array().map_or(0, Vec::len);
        let total: i64 = sample["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["count"].as_i64())
            .sum();
        assert!(rows > 0, "{what}: {sample}");
        let what = format!("{what}: {rows} rows, {total} calls");
        let mut run = load(&client, url, &token, &workspace_id, 1).await;
        print_run(
            &format!("GET /usage, 30 days: {what} (1 client)"),
            &mut run,
            None,
        );
    }
    pulsar.stop().await;
}
