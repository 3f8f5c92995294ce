//! The test harness: a throwaway PostgreSQL per test process (or the server named by
//! `DATABASE_URL`), a fresh database per test cloned from a migrated template, and
//! helpers to drive the real router or the real binary.
//!
//! Layout:
//! - [`database`]: the cluster, templates and per-test databases.
//! - [`TestApp`]: the real router and runtime on one test database, driven in process.
//! - [`Response`]: a decoded response with assertion helpers.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use pulsar_api::runtime::{Role, Runtime};
use pulsar_api::Config;
use pulsar_projections::subscription::SubscriptionConfig;
use serde_json::{json, Value};
use sqlx::PgPool;
use tower::ServiceExt;

pub mod audit;
pub mod bench;
pub mod database;
pub mod mcp;
pub mod receiver;

pub use database::TestDb;
pub use pulsar_api::runtime::Role as ProcessRole;

/// Subscription tunables for tests: small polls so fallbacks are quick.
pub fn fast_subscriptions() -> SubscriptionConfig {
    SubscriptionConfig {
        batch_size: 500,
        poll_interval: Duration::from_millis(200),
        max_backoff: Duration::from_millis(400),
        stuck_after: 3,
    }
}

/// The configuration tests start from.
pub fn test_config() -> Config {
    Config {
        max_body_bytes: 64 * 1024,
        db_pool_size: 10,
        // Tests that are not about rate limits must not trip over them.
        rate_limit_scale: 100.0,
        maintenance_interval: Duration::from_millis(100),
        // Read-your-writes waits up to 2 s in production; a test binary that loads 100k
        // events beside another test on 2 cores can starve a projector longer than that,
        // and answers would then race the read model.
        consistency_timeout: Duration::from_secs(10),
        // Never a key file in the working directory.
        secret_key: Some("00".repeat(32)),
        audit_signing_key: Some("11".repeat(32)),
        // Receivers listen on loopback over plain HTTP; retries come fast.
        webhooks: pulsar_dispatcher::DispatcherConfig {
            allow_cidrs: vec!["127.0.0.0/8".parse().expect("cidr")],
            allow_http: true,
            retry_schedule: vec![Duration::from_millis(200); 3],
            request_timeout: Duration::from_secs(3),
            lease: Duration::from_secs(8),
            poll_interval: Duration::from_millis(100),
            ..pulsar_dispatcher::DispatcherConfig::default()
        },
        ..Config::default()
    }
}

/// The real application on its own database.
pub struct TestApp {
    pub db: TestDb,
    pub router: axum::Router,
    pub runtime: Runtime,
}

/// A decoded response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts an error envelope with this status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.body["error"], code, "body: {}", self.text);
        assert!(self.body["message"].is_string(), "body: {}", self.text);
        assert_eq!(
            self.body["request_id"].as_str(),
            self.header("x-request-id"),
            "request_id must equal the X-Request-ID header"
        );
        self
    }
}

/// A signed-up user with a session and their own workspace.
#[derive(Debug, Clone)]
pub struct User {
    pub email: String,
    pub token: String,
    pub user_id: String,
    pub workspace_id: String,
}

impl User {
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

impl TestApp {
    pub async fn start() -> TestApp {
        Self::start_with(test_config()).await
    }

    pub async fn start_with(config: Config) -> TestApp {
        Self::start_as(config, Role::All).await
    }

    /// The application in one role (e.g. without the dispatcher, which a test then runs
    /// as a separate process).
    pub async fn start_as(config: Config, role: Role) -> TestApp {
        // `TEST_LOG=debug` shows the server's log while debugging a test.
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let db = TestDb::new().await;
        let runtime = Runtime::start_with(config, db.pool.clone(), role, fast_subscriptions())
            .await
            .expect("runtime starts");
        let router = pulsar_api::app(runtime.state.clone());
        TestApp {
            db,
            router,
            runtime,
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.db.pool
    }

    /// Sends a raw request through the real router.
    pub async fn send(&self, request: Request<Body>) -> Response {
        send(&self.router, request).await
    }

    /// A JSON request with optional bearer token and extra headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        call(&self.router, method, path, token, body, headers).await
    }

    /// Another server process on the same database (`--role api`, or any role), with
    /// its own key table, caches and listener: what a second node sees.
    pub async fn another_process(&self, role: Role) -> Process {
        self.another_process_with(test_config(), role).await
    }

    /// [`Self::another_process`] with its own configuration.
    pub async fn another_process_with(&self, config: Config, role: Role) -> Process {
        let runtime = Runtime::start_with(config, self.db.pool.clone(), role, fast_subscriptions())
            .await
            .expect("second runtime starts");
        Process {
            router: pulsar_api::app(runtime.state.clone()),
            runtime,
        }
    }

    pub async fn get(&self, path: &str, user: &User) -> Response {
        self.call("GET", path, Some(&user.token), None, &[]).await
    }

    pub async fn post(&self, path: &str, user: &User, body: Value) -> Response {
        self.call("POST", path, Some(&user.token), Some(body), &[])
            .await
    }

    pub async fn patch(&self, path: &str, user: &User, body: Value) -> Response {
        self.call("PATCH", path, Some(&user.token), Some(body), &[])
            .await
    }

    /// POSTs `body` to `path`, expects 201, and returns the new item's id.
    pub async fn created_id(&self, path: &str, user: &User, body: Value) -> String {
        let response = self.post(path, user, body).await;
        response.expect(201);
        response.body["data"]["id"]
            .as_str()
            .expect("id")
            .to_string()
    }

    pub async fn delete(&self, path: &str, user: &User) -> Response {
        self.call("DELETE", path, Some(&user.token), None, &[])
            .await
    }

    /// Signs up `email` with a workspace called `workspace`.
    pub async fn signup(&self, email: &str, workspace: &str) -> User {
        let response = self
            .call(
                "POST",
                "/api/v1/auth/signup",
                None,
                Some(json!({
                    "email": email,
                    "password": "correct horse battery staple",
                    "name": "Test User",
                    "workspace_name": workspace,
                })),
                &[],
            )
            .await;
        response.expect(201);
        User {
            email: email.to_string(),
            token: response.body["token"].as_str().expect("token").to_string(),
            user_id: response.body["principal"]["id"]
                .as_str()
                .expect("principal id")
                .to_string(),
            workspace_id: response.body["primaryWorkspace"]["id"]
                .as_str()
                .expect("workspace id")
                .to_string(),
        }
    }

    /// Stops the background tasks.
    pub async fn stop(self) {
        self.runtime.stop().await;
    }
}

/// A second server process of a [`TestApp`].
pub struct Process {
    pub router: axum::Router,
    pub runtime: Runtime,
}

impl Process {
    /// As [`TestApp::call`], through this process.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        call(&self.router, method, path, token, body, headers).await
    }

    pub async fn stop(self) {
        self.runtime.stop().await;
    }
}

/// A JSON request with optional bearer token and extra headers, through `router`.
pub async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Response {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    send(router, builder.body(body).expect("request")).await
}

/// Sends a raw request through `router` (any process's) and collects the answer.
pub async fn send(router: &axum::Router, request: Request<Body>) -> Response {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Response {
        status,
        headers,
        body,
        text,
    }
}

/// Drives every kind of command through the API (users, workspaces and their settings
/// and tier, members added, changed and removed, keys created, changed, rotated and
/// revoked, all six record kinds created, changed and deleted, a workspace deleted);
/// returns the owner of the workspace it all happened in.
pub async fn every_kind_of_command(app: &TestApp) -> User {
    const V1: &str = "/api/v1";
    let owner = app.signup("owner@workload.example", "Workload").await;
    let other = app.signup("other@workload.example", "Other").await;
    let ws = owner.workspace_id.clone();
    // Every kind of command.
    app.patch(
        &format!("{V1}/workspaces/{ws}"),
        &owner,
        json!({"name": "Catalog 2", "settings": {"timezone": "Europe/Berlin"}, "tier": "pro"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("{V1}/workspaces/{ws}/members"),
        &owner,
        json!({"email": other.email, "role": "viewer"}),
    )
    .await
    .expect(201);
    app.patch(
        &format!("{V1}/workspaces/{ws}/members/{}", other.user_id),
        &owner,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    app.delete(
        &format!("{V1}/workspaces/{ws}/members/{}", other.user_id),
        &owner,
    )
    .await
    .expect(204);
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &owner,
            json!({"name": "k", "scopes": ["*"], "ip_allowlist": ["10.0.0.0/8"]}),
        )
        .await;
    let key_id = key.body["data"]["id"].as_str().expect("id").to_string();
    app.patch(
        &format!("{V1}/api-keys/{key_id}"),
        &owner,
        json!({"name": "k2", "max_age_days": 30}),
    )
    .await
    .expect(200);
    let rotated = app
        .post(
            &format!("{V1}/api-keys/{key_id}/rotate"),
            &owner,
            json!({"grace_period_hours": 0}),
        )
        .await;
    rotated.expect(200);
    let new_key = rotated.body["data"]["id"].as_str().expect("id").to_string();
    app.delete(&format!("{V1}/api-keys/{new_key}"), &owner)
        .await
        .expect(204);
    let project = app
        .post(
            &format!("{V1}/projects"),
            &owner,
            json!({"name": "P", "tags": ["a"]}),
        )
        .await;
    let project = project.body["data"]["id"].as_str().expect("id").to_string();
    let company = app
        .post(
            &format!("{V1}/companies"),
            &owner,
            json!({"name": "C", "domain": "c.example"}),
        )
        .await;
    let company = company.body["data"]["id"].as_str().expect("id").to_string();
    let contact = app
        .post(
            &format!("{V1}/contacts"),
            &owner,
            json!({"name": "K", "email": "k@c.example", "company_id": company}),
        )
        .await;
    let contact = contact.body["data"]["id"].as_str().expect("id").to_string();
    for (path, body, patch) in [
        (
            "tasks",
            json!({"project_id": project, "title": "T", "due_date": "2026-12-24"}),
            json!({"status": "done"}),
        ),
        (
            "deals",
            json!({"name": "D", "amount_cents": 100, "company_id": company, "contact_id": contact}),
            json!({"stage": "won"}),
        ),
        (
            "documents",
            json!({"title": "Doc", "body": "# Hi"}),
            json!({"tags": ["x"]}),
        ),
    ] {
        let created = app.post(&format!("{V1}/{path}"), &owner, body).await;
        created.expect(201);
        let id = created.body["data"]["id"].as_str().expect("id").to_string();
        app.patch(&format!("{V1}/{path}/{id}"), &owner, patch)
            .await
            .expect(200);
        app.delete(&format!("{V1}/{path}/{id}"), &owner)
            .await
            .expect(204);
    }
    // Usage recorded as an event, a pixel event, and two SEO reports of one URL (the
    // second replaces the first's issues) beside a report of another URL.
    app.post(
        &format!("{V1}/entitlements/usage"),
        &owner,
        json!({"feature": "api_calls", "quantity": 3, "metadata": {"job": "export"}}),
    )
    .await
    .expect(200);
    // Enough pixel events recorded to pass 80% of the tier's monthly allowance: a
    // threshold alert (recorded in the background; waited for).
    let check = app
        .get(
            &format!("{V1}/entitlements/check?feature=pixel_events"),
            &owner,
        )
        .await;
    let limit = check.body["limit"].as_u64().expect("a limited tier");
    app.post(
        &format!("{V1}/entitlements/usage"),
        &owner,
        json!({"feature": "pixel_events", "quantity": limit * 4 / 5}),
    )
    .await
    .expect(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM events WHERE event_type = 'ThresholdReached'",
    )
    .fetch_one(app.pool())
    .await
    .expect("count")
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "no threshold alert");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let workspace = app
        .get(&format!("{V1}/workspaces/{}", owner.workspace_id), &owner)
        .await;
    let pixel = workspace.body["data"]["pixel_id"]
        .as_str()
        .expect("pixel id")
        .to_string();
    app.call(
        "POST",
        &format!("{V1}/pixel/track"),
        None,
        Some(json!({"pixel_id": pixel, "event": "pageview", "url": "https://shop.example/"})),
        &[],
    )
    .await
    .expect(202);
    for (url, severity) in [
        ("https://shop.example/", "high"),
        ("https://shop.example/", "low"),
        ("https://shop.example/about", "critical"),
    ] {
        app.post(
            &format!("{V1}/seo/report"),
            &owner,
            json!({"url": url,
                   "scores": {"performance": 90, "accessibility": 80, "best_practices": 70, "seo": 60},
                   "issues": [{"type": "missing_alt", "severity": severity, "element": "img"}]}),
        )
        .await
        .expect(201);
    }
    // A webhook endpoint's whole life; `.invalid` never resolves, so nothing is sent.
    let hook = app
        .post(
            &format!("{V1}/webhooks"),
            &owner,
            json!({"url": "https://hooks.invalid/pulsar", "events": ["projects.*"]}),
        )
        .await;
    hook.expect(201);
    let hook = hook.body["data"]["id"].as_str().expect("id").to_string();
    app.patch(
        &format!("{V1}/webhooks/{hook}"),
        &owner,
        json!({"description": "CRM sync"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("{V1}/webhooks/{hook}/rotate-secret"),
        &owner,
        json!({}),
    )
    .await
    .expect(200);
    // Disabled the way the dispatcher does it.
    let control = pulsar_api::application::webhooks::Control {
        commands: app.runtime.state.commands.clone(),
    };
    pulsar_dispatcher::EndpointControl::disable(&control, &hook, "The endpoint answered 410 Gone.")
        .await
        .expect("disable");
    app.patch(
        &format!("{V1}/webhooks/{hook}"),
        &owner,
        json!({"is_active": true}),
    )
    .await
    .expect(200);
    app.delete(&format!("{V1}/webhooks/{hook}"), &owner)
        .await
        .expect(204);
    app.patch(
        &format!("{V1}/projects/{project}"),
        &owner,
        json!({"status": "archived"}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("{V1}/contacts/{contact}"),
        &owner,
        json!({"phone": "+44 20 7946 0958"}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("{V1}/companies/{company}"),
        &owner,
        json!({"domain": null}),
    )
    .await
    .expect(200);
    app.delete(&format!("{V1}/contacts/{contact}"), &owner)
        .await
        .expect(204);
    app.delete(&format!("{V1}/companies/{company}"), &owner)
        .await
        .expect(204);
    app.delete(&format!("{V1}/projects/{project}"), &owner)
        .await
        .expect(204);
    app.delete(&format!("{V1}/workspaces/{}", other.workspace_id), &other)
        .await
        .expect(204);

    owner
}

/// Runs a Python script (`python3 -c`) with `input` on stdin; returns whether it exited
/// successfully, its stdout and its stderr. The verifiers tests use are Python, written
/// independently of the server (the test setup installs the packages they import).
pub fn python(script: &str, input: &[u8]) -> (bool, String, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to python3");
    let output = child.wait_with_output().expect("python3 finishes");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The `pulsar` binary, built if needed (cargo test builds other packages' binaries only
/// when asked).
pub fn pulsar_binary() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // Without the variables cargo sets for this test: build scripts that read
            // them (ring's reads CARGO_MANIFEST_DIR) would otherwise see a change and
            // rebuild half the tree.
            let mut command = std::process::Command::new(cargo);
            for (name, _) in std::env::vars() {
                if name.starts_with("CARGO_PKG_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                    ]
                    .contains(&name.as_str())
                {
                    command.env_remove(name);
                }
            }
            let status = command
                .args(["build", "--quiet", "-p", "pulsar-api", "--bin", "pulsar"])
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the pulsar binary failed");
            root.join("target").join("debug").join("pulsar")
        })
        .clone()
}
