//! The defects a hostile client found, each by name: NUL bytes reaching PostgreSQL,
//! validation that grew faster than its input, ambiguous input guessed at, and query
//! parameters handled unevenly. (The generated sweep in `hostile.rs` covers every
//! operation; these pin the reported cases.)

use std::time::Duration;

use pulsar_tests::{TestApp, User};
use serde_json::{json, Value};

const V1: &str = "/api/v1";

async fn events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count")
}

async fn created_id(app: &TestApp, user: &User, path: &str, body: Value) -> String {
    app.created_id(path, user, body).await
}

/// Sends a raw JSON text.
async fn send_raw(
    app: &TestApp,
    method: &str,
    path: &str,
    user: &User,
    raw: &str,
) -> pulsar_tests::Response {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", user.bearer())
        .header("content-type", "application/json")
        .body(axum::body::Body::from(raw.to_string()))
        .expect("request");
    app.send(request).await
}

#[tokio::test]
async fn nul_bytes_in_paths_and_queries_are_400_and_never_reach_postgresql() {
    let app = TestApp::start().await;
    let user = app.signup("nul@edge.example", "Nul").await;
    let project = created_id(&app, &user, &format!("{V1}/projects"), json!({"name": "P"})).await;
    let key = created_id(
        &app,
        &user,
        &format!("{V1}/api-keys"),
        json!({"name": "k", "scopes": ["*"]}),
    )
    .await;
    let before = events(&app).await;
    let ws = &user.workspace_id;
    for (method, path) in [
        ("GET", format!("{V1}/projects/%00")),
        ("GET", format!("{V1}/projects/{project}%00")),
        ("GET", format!("{V1}/api-keys/%00/history")),
        ("GET", format!("{V1}/api-keys/{key}%00/history")),
        ("GET", format!("{V1}/workspaces/%00/members")),
        ("DELETE", format!("{V1}/projects/%00")),
        ("GET", format!("{V1}/companies?domain=%00")),
        ("GET", format!("{V1}/projects?tag=%00")),
        ("GET", format!("{V1}/tasks?project_id=%00")),
        ("GET", format!("{V1}/contacts?email=a%00b")),
        ("GET", format!("{V1}/projects?search=%00")),
        ("GET", format!("{V1}/documents?search=a%00b")),
        ("GET", format!("{V1}/api-keys?search=a%00b")),
        ("GET", format!("{V1}/workspaces?search=%00")),
        ("GET", format!("{V1}/workspaces/{ws}/members?search=%00")),
        ("GET", format!("{V1}/projects?workspaceId=%00")),
        ("GET", format!("{V1}/projects/{project}?workspaceId=%00")),
    ] {
        let response = app.call(method, &path, Some(&user.token), None, &[]).await;
        assert_eq!(response.status, 400, "{method} {path}: {}", response.text);
        response.expect_error(400, "bad_request");
    }
    assert_eq!(events(&app).await, before, "nothing written");
    app.stop().await;
}

#[tokio::test]
async fn ids_that_cannot_be_ids_are_404_without_the_database() {
    let app = TestApp::start().await;
    let user = app.signup("shape@edge.example", "Shape").await;
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "k", "scopes": ["*"]}),
        )
        .await;
    key.expect(201);
    let key = key.body["data"]["key"].as_str().expect("key").to_string();
    // The same application over a pool that cannot connect: keys verify from memory,
    // so only a request that touches the database can tell.
    let mut state = app.runtime.state.clone();
    state.pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy("postgres://nobody@127.0.0.1:1/nothing")
        .expect("lazy pool");
    let offline = pulsar_api::app(state);
    let call = |path: String| {
        let offline = offline.clone();
        let key = key.clone();
        async move { pulsar_tests::call(&offline, "GET", &path, Some(&key), None, &[]).await }
    };
    for path in [
        format!("{V1}/projects/not-an-id"),
        format!("{V1}/projects/PROJ_0193A5F7C6A87F4C9D5E3B2A1C0D9E8F"),
        format!("{V1}/projects/task_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f"),
        format!("{V1}/api-keys/key_123/history"),
        format!("{V1}/workspaces/ws_nope/members"),
        format!("{V1}/documents/{}", "d".repeat(500)),
    ] {
        call(path).await.expect_error(404, "not_found");
    }
    // A well-formed id does reach the (unreachable) database: the check above is real.
    let reached = call(format!(
        "{V1}/projects/proj_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f"
    ))
    .await;
    assert_eq!(reached.status, 503, "{}", reached.text);
    app.stop().await;
}

#[tokio::test]
async fn validation_is_bounded_before_it_grows_and_lists_are_stored_normalised() {
    let app = TestApp::start().await;
    let user = app.signup("bounded@edge.example", "Bounded").await;
    let before = events(&app).await;
    // 60,000 distinct tags: refused with one message (the body limit is raised for it).
    let tags: Vec<String> = (0..60_000).map(|i| format!("t{i}")).collect();
    let mut config = pulsar_tests::test_config();
    config.max_body_bytes = 4 * 1024 * 1024;
    let big = TestApp::start_with(config).await;
    let big_user = big.signup("big@edge.example", "Big").await;
    let response = big
        .post(
            &format!("{V1}/documents"),
            &big_user,
            json!({"title": "t", "tags": tags}),
        )
        .await;
    response.expect_error(422, "validation_failed");
    // Refused while parsing, at item 1,001: the rest of the list is never built.
    assert_eq!(
        response.body["errors"],
        json!({"tags": ["No more than 1000 items are allowed here."]})
    );
    big.stop().await;
    // Under the parser's bound, the domain's own limit answers.
    app.post(
        &format!("{V1}/documents"),
        &user,
        json!({"title": "t", "tags": (0..500).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
    )
    .await
    .expect_error(422, "validation_failed")
    .body["errors"]
        .get("tags")
        .map(|m| assert_eq!(m, &json!(["No more than 20 tags are allowed."])))
        .expect("tags named");
    // Repeats do not slip an oversized list through.
    app.post(
        &format!("{V1}/documents"),
        &user,
        json!({"title": "t", "tags": vec!["same"; 5_000]}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        &format!("{V1}/api-keys"),
        &user,
        json!({"name": "k", "scopes": vec!["projects:read"; 3_000]}),
    )
    .await
    .expect_error(422, "validation_failed");
    assert_eq!(events(&app).await, before, "nothing written");
    // Within the limits, repeats are stored once.
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "k", "scopes": ["projects:read", "projects:read", "tasks:read"],
                   "ip_allowlist": ["10.0.0.0/8", " 10.0.0.0/8"]}),
        )
        .await;
    key.expect(201);
    assert_eq!(
        key.body["data"]["scopes"],
        json!(["projects:read", "tasks:read"])
    );
    assert_eq!(key.body["data"]["ip_allowlist"], json!(["10.0.0.0/8"]));
    let document = app
        .post(
            &format!("{V1}/documents"),
            &user,
            json!({"title": "t", "tags": ["a", "a", " a ", "b"]}),
        )
        .await;
    document.expect(201);
    assert_eq!(document.body["data"]["tags"], json!(["a", "b"]));
    app.stop().await;
}

#[tokio::test]
async fn ambiguous_input_is_refused_not_guessed_at() {
    let app = TestApp::start().await;
    let user = app.signup("ambiguous@edge.example", "Ambiguous").await;
    let project = created_id(&app, &user, &format!("{V1}/projects"), json!({"name": "P"})).await;
    let before = events(&app).await;
    // A repeated member, on creates and patches alike.
    for (method, path, raw) in [
        (
            "POST",
            format!("{V1}/projects"),
            r#"{"name": "a", "name": "b"}"#,
        ),
        (
            "PATCH",
            format!("{V1}/projects/{project}"),
            r#"{"name": "a", "description": "x", "name": "b"}"#,
        ),
        (
            "POST",
            format!("{V1}/api-keys"),
            r#"{"name": "k", "scopes": ["*"], "scopes": ["projects:read"]}"#,
        ),
        (
            "POST",
            format!("{V1}/workspaces"),
            r#"{"name": "a", "tier": "free", "tier": "pro"}"#,
        ),
        (
            "POST",
            format!("{V1}/tasks"),
            r#"{"project_id": "x", "title": "t", "nested": {"a": 1, "a": 2}}"#,
        ),
    ] {
        let response = send_raw(&app, method, &path, &user, raw).await;
        response.expect_error(400, "bad_request");
        assert!(
            response.body["message"]
                .as_str()
                .unwrap_or("")
                .contains("more than once"),
            "{method} {path}: {}",
            response.text
        );
    }
    // A login body too (no credential needed to be refused).
    let login = app
        .send(
            axum::http::Request::builder()
                .method("POST")
                .uri(format!("{V1}/auth/login"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from(
                    r#"{"email": "a@b.co", "email": "ambiguous@edge.example", "password": "x"}"#,
                ))
                .expect("request"),
        )
        .await;
    login.expect_error(400, "bad_request");
    assert_eq!(events(&app).await, before, "nothing written");

    // Two credentials: refused whichever order and whichever is valid.
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "k", "scopes": ["*"]}),
        )
        .await;
    let full = key.body["data"]["key"].as_str().expect("key").to_string();
    let api_key = key.body["data"]["apiKey"]
        .as_str()
        .expect("apiKey")
        .to_string();
    let api_secret = key.body["data"]["apiSecret"]
        .as_str()
        .expect("apiSecret")
        .to_string();
    let projects = format!("{V1}/projects");
    let twice = |first: String, second: String| {
        axum::http::Request::builder()
            .uri(&projects)
            .header("authorization", first)
            .header("authorization", second)
            .body(axum::body::Body::empty())
            .expect("request")
    };
    let valid = format!("Bearer {full}");
    let invalid = "Bearer psk_nope".to_string();
    for request in [
        twice(valid.clone(), invalid.clone()),
        twice(invalid.clone(), valid.clone()),
        twice(valid.clone(), valid.clone()),
    ] {
        app.send(request).await.expect_error(401, "unauthorized");
    }
    app.call(
        "GET",
        &projects,
        Some(&full),
        None,
        &[("x-api-key", &api_key), ("x-api-secret", &api_secret)],
    )
    .await
    .expect_error(401, "unauthorized");
    // The pair alone still works.
    app.call(
        "GET",
        &projects,
        None,
        None,
        &[("x-api-key", &api_key), ("x-api-secret", &api_secret)],
    )
    .await
    .expect(200);
    app.stop().await;
}

#[tokio::test]
async fn every_route_refuses_unknown_parameters_and_accepts_the_scoping_one() {
    let app = TestApp::start().await;
    let user = app.signup("params@edge.example", "Params").await;
    let ws = user.workspace_id.clone();
    let project = created_id(&app, &user, &format!("{V1}/projects"), json!({"name": "P"})).await;
    let key = created_id(
        &app,
        &user,
        &format!("{V1}/api-keys"),
        json!({"name": "k", "scopes": ["*"]}),
    )
    .await;
    // `as_of` is known on single GETs only (and must be a time there).
    for path in [
        format!("{V1}/api-keys/{key}?as_of=not-a-date"),
        format!("{V1}/api-keys?as_of=2026-01-01T00:00:00Z"),
        format!("{V1}/projects?as_of=2026-01-01T00:00:00Z"),
        format!("{V1}/api-keys/{key}?asof=2026-01-01T00:00:00Z"),
        format!("{V1}/workspaces/{ws}?bogus=1"),
        format!("{V1}/projects/{project}?bogus=1"),
        format!("{V1}/projects?bogus=1"),
        format!("{V1}/auth/session?bogus=1"),
        "/healthz?bogus=1".to_string(),
    ] {
        let response = app.get(&path, &user).await;
        response.expect_error(400, "bad_request");
    }
    for (method, path) in [
        ("PATCH", format!("{V1}/projects/{project}?bogus=1")),
        ("DELETE", format!("{V1}/projects/{project}?bogus=1")),
        ("POST", format!("{V1}/projects?bogus=1")),
    ] {
        app.call(
            method,
            &path,
            Some(&user.token),
            Some(json!({"name": "x"})),
            &[],
        )
        .await
        .expect_error(400, "bad_request");
    }
    // `workspaceId` is accepted everywhere a request acts in a workspace.
    for path in [
        format!("{V1}/api-keys/{key}?workspaceId={ws}"),
        format!("{V1}/workspaces/{ws}?workspaceId={ws}"),
        format!("{V1}/projects/{project}?workspaceId={ws}"),
        format!("{V1}/projects/{project}?workspaceId={ws}&fields=id"),
        format!("{V1}/api-keys/{key}/history?workspaceId={ws}"),
        format!("{V1}/auth/session?workspaceId={ws}"),
    ] {
        app.get(&path, &user).await.expect(200);
    }
    app.patch(
        &format!("{V1}/projects/{project}?workspaceId={ws}"),
        &user,
        json!({"name": "Q"}),
    )
    .await
    .expect(200);
    // A malformed one is refused, even when a header already names the workspace.
    app.call(
        "GET",
        &format!("{V1}/projects?workspaceId=nope"),
        Some(&user.token),
        None,
        &[("x-workspace-id", &ws)],
    )
    .await
    .expect_error(400, "bad_request");
    app.stop().await;
}
