//! MCP `tools/call` against the same REST GET, in one run (target: the MCP call at least
//! 80% of the REST throughput), with a bare axum handler as the machine's baseline.
//!
//! Both read the same project through the same use case with the same key; the MCP side
//! pays for JSON-RPC framing, the tool lookup and the result's text block.
//!
//! `cargo bench -p pulsar-tests --bench mcp` (`BENCH_SECONDS`, `DATABASE_URL`).

use pulsar_api::app;
use pulsar_tests::bench::{
    baseline_axum, bench_database, client, cpu_model, create, drive, owner, print_run, serve,
    start_pulsar,
};
use serde_json::json;

#[tokio::main]
async fn main() {
    let (url, _cluster) = bench_database("bench-mcp");
    let (_pool, runtime) = start_pulsar(&url).await;
    let base = serve(app(runtime.state.clone())).await;
    let http = client();
    let (token, workspace) = owner(&http, &base, "mcp@bench.example").await;
    let key = create(
        &http,
        &base,
        &token,
        &workspace,
        "/api-keys",
        json!({"name": "agent", "scopes": ["projects:read"]}),
    )
    .await;
    let key = key["key"].as_str().expect("key").to_string();
    let project = create(
        &http,
        &base,
        &token,
        &workspace,
        "/projects",
        json!({"name": "Benchmarks", "description": "Read again and again", "tags": ["bench"]}),
    )
    .await;
    let project = project["id"].as_str().expect("id").to_string();

    println!("MCP tools/call against REST GET on {}", cpu_model());
    println!("| what | throughput | p50 | p99 | ops | errors |");
    println!("|---|---|---|---|---|---|");
    let mut baseline = baseline_axum().await;
    print_run("bare axum handler (baseline)", &mut baseline, None);

    let rest = {
        let (client, url, key) = (
            http.clone(),
            format!("{base}/api/v1/projects/{project}"),
            key.clone(),
        );
        move |_, _| {
            let request = client.get(&url).bearer_auth(&key);
            async move {
                let response = request.send().await.expect("send");
                let ok = response.status() == 200;
                response.bytes().await.expect("body");
                ok
            }
        }
    };
    let mcp = {
        let (client, url, key) = (http.clone(), format!("{base}/api/mcp"), key.clone());
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "projects_get", "arguments": {"id": project}}})
        .to_string();
        move |_, _| {
            let request = client
                .post(&url)
                .bearer_auth(&key)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .body(body.clone());
            async move {
                let response = request.send().await.expect("send");
                let ok = response.status() == 200;
                let bytes = response.bytes().await.expect("body");
                ok && !bytes.windows(12).any(|w| w == b"\"isError\":tr")
            }
        }
    };
    // Alternate twice so drift on a shared machine hits both sides alike.
    let mut rest_runs = Vec::new();
    let mut mcp_runs = Vec::new();
    for _ in 0..2 {
        rest_runs.push(drive(rest.clone()).await);
        mcp_runs.push(drive(mcp.clone()).await);
    }
    let rate = |runs: &[pulsar_tests::bench::Run]| {
        runs.iter().map(|r| r.per_second()).sum::<f64>() / runs.len() as f64
    };
    let (rest_rate, mcp_rate) = (rate(&rest_runs), rate(&mcp_runs));
    for (i, run) in rest_runs.iter_mut().enumerate() {
        print_run(
            &format!("REST GET /projects/{{id}} (run {})", i + 1),
            run,
            Some(baseline.per_second()),
        );
    }
    for (i, run) in mcp_runs.iter_mut().enumerate() {
        print_run(
            &format!("MCP tools/call projects_get (run {})", i + 1),
            run,
            Some(baseline.per_second()),
        );
    }
    println!(
        "\nMCP tools/call: {mcp_rate:.0}/s against REST {rest_rate:.0}/s = {:.0}% (target >= 80%)",
        mcp_rate / rest_rate * 100.0
    );
    runtime.stop().await;
}
