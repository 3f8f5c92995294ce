//! Workspace data at size: task creation throughput through the API, then 100,000 tasks
//! in one workspace and the latency of lists that filter, search, sort and page them.
//!
//! Baselines from the same run: a bare axum handler over HTTP, and the very SQL the
//! list runs, sent straight to PostgreSQL.
//!
//! `cargo bench -p pulsar-tests --bench data` (uses `DATABASE_URL` when set, else a
//! durable throwaway cluster under target/). `BENCH_SECONDS` sets each timed phase,
//! `BENCH_TASKS` the size (default 100,000).
//!
//! Loading: the tasks that the create phase did not make through the API are appended
//! to the event log in bulk (the same `TaskCreated` events the API writes), and the real
//! `tasks` projection applies them; its catch-up rate is reported too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pulsar_api::app;
use pulsar_tests::bench::{
    baseline_axum, bench_database, client, cpu_model, drive, drive_with, enabled, print_run,
    seconds, serve, start_pulsar, CLIENTS,
};
use serde_json::{json, Value};

const WORDS: &[&str] = &[
    "invoice",
    "launch",
    "review",
    "design",
    "budget",
    "customer",
    "onboarding",
    "release",
    "migration",
    "security",
    "audit",
    "report",
    "campaign",
    "analytics",
    "mobile",
    "server",
    "backup",
    "payment",
    "refund",
    "pricing",
    "roadmap",
    "sprint",
    "hiring",
    "contract",
    "renewal",
    "support",
    "ticket",
    "outage",
    "latency",
    "database",
    "search",
    "index",
    "webhook",
    "integration",
    "partner",
    "newsletter",
    "blog",
    "video",
    "translation",
    "legal",
    "compliance",
    "privacy",
    "export",
    "import",
    "dashboard",
    "alert",
    "metrics",
    "billing",
    "tax",
    "quarterly",
    "planning",
    "retro",
    "demo",
    "feedback",
    "survey",
    "bug",
    "crash",
    "upgrade",
    "license",
    "vendor",
    "shipping",
    "warehouse",
    "inventory",
    "forecast",
    "hiring",
    "training",
    "workshop",
    "offsite",
    "travel",
    "expense",
    "approval",
    "draft",
    "copy",
    "landing",
    "page",
    "signup",
    "checkout",
    "cart",
    "email",
    "sms",
    "notification",
    "calendar",
    "meeting",
    "agenda",
    "notes",
    "summary",
    "archive",
    "cleanup",
    "refactor",
    "test",
    "deploy",
    "rollback",
    "config",
    "secret",
    "rotation",
    "key",
    "token",
    "session",
    "login",
    "password",
];

/// A small deterministic generator, so every run loads the same data.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| WORDS[self.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn task_fields(rng: &mut XorShift, projects: &[String]) -> Value {
    let title_words = 3 + rng.below(4);
    let description_words = 8 + rng.below(12);
    let status = ["todo", "in_progress", "done"][rng.below(3)];
    let priority = ["low", "medium", "high"][rng.below(3)];
    json!({
        "project_id": projects[rng.below(projects.len())],
        // Plus one rare word (an account code, about 10 tasks each), for selective searches.
        "title": format!("{} acct{}", rng.words(title_words), rng.below(10_000)),
        "description": rng.words(description_words),
        "status": status,
        "priority": priority,
        "assignee_id": null,
        "due_date": null,
        "tags": [format!("team-{}", rng.below(20))],
    })
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (url, _cluster) = bench_database("bench-data-cluster");
    let total: usize = std::env::var("BENCH_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    runtime.block_on(async move {
        let (pool, pulsar) = start_pulsar(&url).await;
        println!("machine: {} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), cpu_model());
        println!("{} s per timed phase, fsync on, {total} tasks in one workspace\n", seconds().as_secs());
        println!("| what | throughput | p50 | p99 | operations | errors |");
        println!("|---|---|---|---|---|---|");

        let mut bare_rate = None;
        if enabled("axum") {
            let mut bare = baseline_axum().await;
            print_run(&format!("baseline: bare axum JSON handler over HTTP ({CLIENTS} clients)"), &mut bare, None);
            bare_rate = Some(bare.per_second());
        }

        let base = serve(app(pulsar.state.clone())).await;
        let client = client();
        let signup: Value = client
            .post(format!("{base}/api/v1/auth/signup"))
            .json(&json!({"email": "bench@example.com", "password": "bench password 1", "workspace_name": "Bench"}))
            .send().await.expect("signup").json().await.expect("json");
        let token = signup["token"].as_str().expect("token").to_string();
        let user_id = signup["principal"]["id"].as_str().expect("user").to_string();
        // The data lives in an enterprise workspace: no tier limit on tasks.
        let workspace: Value = client
            .post(format!("{base}/api/v1/workspaces"))
            .bearer_auth(&token)
            .json(&json!({"name": "Big", "tier": "enterprise"}))
            .send().await.expect("workspace").json().await.expect("json");
        let workspace_id = workspace["data"]["id"].as_str().expect("workspace id").to_string();
        let mut projects = Vec::new();
        for n in 0..20 {
            let project: Value = client
                .post(format!("{base}/api/v1/projects"))
                .bearer_auth(&token)
                .header("x-workspace-id", &workspace_id)
                .json(&json!({"name": format!("Project {n}")}))
                .send().await.expect("project").json().await.expect("json");
            projects.push(project["data"]["id"].as_str().expect("project id").to_string());
        }
        let projects = Arc::new(projects);

        // Creation through the API: 32 clients, read-your-writes included.
        if enabled("create") {
            let client = client.clone();
            let (base, token, workspace_id, projects) = (base.clone(), token.clone(), workspace_id.clone(), projects.clone());
            let mut creates = drive(move |c, i| {
                let client = client.clone();
                let url = format!("{base}/api/v1/tasks");
                let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ ((c as u64) << 32 | i as u64));
                let body = task_fields(&mut rng, &projects);
                let (token, workspace_id) = (token.clone(), workspace_id.clone());
                async move {
                    let response = client.post(url).bearer_auth(token).header("x-workspace-id", workspace_id)
                        .json(&body).send().await.expect("post");
                    let ok = response.status() == 201;
                    response.bytes().await.expect("body");
                    ok
                }
            })
            .await;
            print_run(&format!("POST /tasks ({CLIENTS} clients, project check + limit check + read-your-writes)"), &mut creates, None);
        }

        // Bulk load the rest through the log; the real projection applies it.
        let have: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Task'")
            .fetch_one(&pool).await.expect("count");
        let missing = total.saturating_sub(have as usize);
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let load_started = Instant::now();
        let metadata = json!({"actor_type": "user", "actor_id": user_id, "request_id": "req_bench", "client_ip": "127.0.0.1", "user_agent": "bench"});
        let mut last_id = String::new();
        for chunk_start in (0..missing).step_by(5_000) {
            let n = 5_000.min(missing - chunk_start);
            let ids: Vec<String> = (0..n).map(|_| pulsar_domain::ids::new_id("task")).collect();
            last_id = ids.last().cloned().unwrap_or_default();
            let payloads: Vec<Value> = (0..n)
                .map(|_| json!({"Created": {"workspace_id": workspace_id, "fields": task_fields(&mut rng, &projects),
                                            "created_by": {"type": "user", "id": user_id}}}))
                .collect();
            sqlx::query(
                "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
                 SELECT 'Task', id, 1, 'TaskCreated', '1.0', payload, $3 FROM unnest($1::text[], $2::jsonb[]) AS t(id, payload)",
            )
            .bind(&ids)
            .bind(&payloads)
            .bind(&metadata)
            .execute(&pool).await.expect("bulk append");
        }
        let appended = load_started.elapsed();
        pulsar.state.subscriptions.appended();
        let last = pulsar_projections::log::position_of_latest(&pool, "Task", &last_id)
            .await
            .expect("position")
            .map(|(position, _)| position)
            .unwrap_or_default();
        let caught_up = pulsar.state.subscriptions.wait_for(&["tasks"], last, Duration::from_secs(1800)).await;
        assert!(caught_up, "the tasks projection caught up");
        let applied = load_started.elapsed();
        // What autovacuum does shortly after a bulk load anyway; done here so every run
        // measures the same state.
        sqlx::query("VACUUM ANALYZE tasks").execute(&pool).await.expect("vacuum");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks WHERE workspace_id = $1")
            .bind(&workspace_id).fetch_one(&pool).await.expect("count");
        println!();
        println!("loaded {missing} TaskCreated events in {:.1} s; the tasks projection applied them {:.1} s later ({:.0} events/s); {rows} tasks in the workspace", appended.as_secs_f64(), (applied - appended).as_secs_f64(), missing as f64 / (applied - appended).as_secs_f64().max(0.001));
        println!();
        println!("| what | throughput | p50 | p99 | operations | errors |");
        println!("|---|---|---|---|---|---|");

        // The lists: filter + search (+ sort, fields, page), rotating over words.
        // Common words are each in about 15 % of all tasks (5,000 matches after the status
        // filter): the worst case for counting. Account codes match about 10 tasks.
        let common = WORDS.iter().take(40).enumerate().map(|(n, word)| match n % 4 {
            0 => format!("status=todo&search={word}"),
            1 => format!("status=in_progress,done&search={word}&sort=-priority,title&fields=id,title,status&page=2"),
            2 => format!("tag=team-{}&search={word}&sort=due_date", n % 20),
            _ => format!("project_id={}&status=todo&search={word}%20OR%20review&per_page=100", projects[n % 20]),
        });
        let selective = (0..40).map(|n| match n % 2 {
            0 => format!("status=todo,in_progress&search=acct{}&sort=-priority,title", n * 211),
            _ => format!("search=acct{}%20{}&include=project&fields=id,title,project", n * 211, WORDS[n]),
        });
        // "Cold": every request differs (a never-binding `created_before` that changes per
        // request), so each total is counted afresh. "Warm": the 40 variants repeat, so a
        // total is reused while the tasks read model has not moved (as when a client
        // pages through results or a dashboard polls).
        for (label, queries) in [("common words", common.collect::<Vec<_>>()), ("account codes", selective.collect())] {
            let queries = Arc::new(queries);
            for (temperature, clients) in [("cold", 1), ("cold", CLIENTS), ("warm", 1), ("warm", CLIENTS)] {
                let client = client.clone();
                let (base, token, workspace_id, queries) = (base.clone(), token.clone(), workspace_id.clone(), queries.clone());
                let cold = temperature == "cold";
                let mut lists = drive_with(clients, move |c, i| {
                    let client = client.clone();
                    let mut url = format!("{base}/api/v1/tasks?{}", queries[(c * 7 + i) % queries.len()]);
                    if cold {
                        url.push_str(&format!("&created_before=2100-01-01T00:00:00.{:06}Z", (c * 100_000 + i) % 1_000_000));
                    }
                    let (token, workspace_id) = (token.clone(), workspace_id.clone());
                    async move {
                        let response = client.get(url).bearer_auth(token).header("x-workspace-id", workspace_id).send().await.expect("get");
                        let ok = response.status() == 200;
                        response.bytes().await.expect("body");
                        ok
                    }
                })
                .await;
                let baseline = if clients == CLIENTS { bare_rate } else { None };
                print_run(&format!("GET /tasks filter + search, {label}, {temperature}, {clients} client(s)"), &mut lists, baseline);
            }
        }
        // Baseline: the list's own SQL (the `status=todo&search=` shape) straight to PostgreSQL.
        {
            let pool = pool.clone();
            let workspace_id = workspace_id.clone();
            let mut raw = drive_with(1, move |_, i| {
                let pool = pool.clone();
                let word = WORDS[(i * 4) % 40].to_string();
                let workspace_id = workspace_id.clone();
                async move {
                    sqlx::query(
                        "SELECT t.id, count(*) OVER () FROM tasks t
                          WHERE t.workspace_id = $1 AND t.status = ANY($2)
                            AND t.search @@ websearch_to_tsquery('simple', $3)
                          ORDER BY t.created_at DESC NULLS LAST, t.id LIMIT 25",
                    )
                    .bind(workspace_id)
                    .bind(vec!["todo".to_string()])
                    .bind(word)
                    .fetch_all(&pool)
                    .await
                    .is_ok()
                }
            })
            .await;
            print_run("baseline: the `status=todo&search=<common word>` page + count SQL straight to PostgreSQL, 1 client", &mut raw, None);
        }
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON)
             SELECT t.id FROM tasks t WHERE t.workspace_id = $1 AND t.status = ANY($2)
                AND t.search @@ websearch_to_tsquery('simple', $3)
              ORDER BY t.created_at DESC, t.id LIMIT 25",
        )
        .bind(&workspace_id)
        .bind(vec!["todo".to_string()])
        .bind("invoice")
        .fetch_all(&pool)
        .await
        .expect("explain");
        println!("\nplan of `status=todo&search=invoice`:\n    {}", plan.join("\n    "));
        pulsar.stop().await;
    });
}
