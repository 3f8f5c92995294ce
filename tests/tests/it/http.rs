//! API.md section 3: the error envelope, request ids, body rules, lists, OpenAPI.

use axum::body::Body;
use axum::http::Request;
use pulsar_tests::TestApp;
use serde_json::json;

#[tokio::test]
async fn every_error_has_the_envelope_and_request_ids_are_echoed() {
    let app = TestApp::start().await;
    // Unknown route, wrong method, no credentials.
    app.call("GET", "/api/v1/nope", None, None, &[])
        .await
        .expect_error(404, "not_found");
    app.call("PUT", "/api/v1/auth/login", None, None, &[])
        .await
        .expect_error(405, "method_not_allowed");
    app.call("GET", "/api/v1/workspaces", None, None, &[])
        .await
        .expect_error(401, "unauthorized");
    app.call("GET", "/api/v1/workspaces", Some("pst_nonsense"), None, &[])
        .await
        .expect_error(401, "unauthorized");
    let response = app
        .call(
            "GET",
            "/api/v1/workspaces",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    response.expect_error(401, "unauthorized");

    // A client's request id is echoed, in the header and the body.
    let response = app
        .call(
            "GET",
            "/api/v1/nope",
            None,
            None,
            &[("x-request-id", "client-id-123")],
        )
        .await;
    assert_eq!(response.header("x-request-id"), Some("client-id-123"));
    assert_eq!(response.body["request_id"], "client-id-123");
    // x-pulse-id is echoed under its own name.
    let response = app
        .call("GET", "/healthz", None, None, &[("x-pulse-id", "pulse-7")])
        .await;
    assert_eq!(response.header("x-pulse-id"), Some("pulse-7"));
    // Otherwise one is generated, on successes too.
    let response = app.call("GET", "/healthz", None, None, &[]).await;
    response.expect(200);
    assert!(response
        .header("x-request-id")
        .is_some_and(|id| id.starts_with("req_")));
    // A hostile id is replaced, not echoed.
    let long = "x".repeat(300);
    let response = app
        .call("GET", "/healthz", None, None, &[("x-request-id", &long)])
        .await;
    assert_ne!(response.header("x-request-id"), Some(long.as_str()));
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_their_documented_status() {
    let app = TestApp::start().await;
    let signup = "/api/v1/auth/signup";
    // Malformed JSON: 400.
    let request = Request::post(signup)
        .header("content-type", "application/json")
        .body(Body::from("{\"email\": "))
        .expect("request");
    app.send(request).await.expect_error(400, "bad_request");
    // Not an object: 400.
    let request = Request::post(signup)
        .header("content-type", "application/json")
        .body(Body::from("[1,2]"))
        .expect("request");
    app.send(request).await.expect_error(400, "bad_request");
    // Wrong content type: 415.
    let request = Request::post(signup)
        .header("content-type", "text/plain")
        .body(Body::from("{}"))
        .expect("request");
    app.send(request)
        .await
        .expect_error(415, "unsupported_media_type");
    // Over the configured limit (64 KiB in tests): 413.
    let big = json!({"email": "a@b.co", "password": "x".repeat(70 * 1024), "workspace_name": "w"});
    app.call("POST", signup, None, Some(big), &[])
        .await
        .expect_error(413, "payload_too_large");
    // Wrong types, missing and unknown fields: 422 with the field named.
    let response = app
        .call("POST", signup, None, Some(json!({"email": 5})), &[])
        .await;
    response.expect_error(422, "validation_failed");
    assert!(
        response.body["errors"]["email"][0]
            .as_str()
            .is_some_and(|m| m.contains("string")),
        "{}",
        response.text
    );
    let response = app
        .call("POST", signup, None, Some(json!({"email": "a@b.co"})), &[])
        .await;
    response.expect_error(422, "validation_failed");
    assert!(
        response.body["errors"]["password"].is_array(),
        "{}",
        response.text
    );
    let response = app
        .call(
            "POST",
            signup,
            None,
            Some(json!({"email": "a@b.co", "password": "long enough pw", "workspace_name": "w", "admin": true})),
            &[],
        )
        .await;
    response.expect_error(422, "validation_failed");
    assert!(
        response.body["errors"]["admin"].is_array(),
        "{}",
        response.text
    );
    // Every field checked at once.
    let response = app
        .call(
            "POST",
            signup,
            None,
            Some(json!({"email": "nope", "password": "short", "workspace_name": " "})),
            &[],
        )
        .await;
    response.expect_error(422, "validation_failed");
    for field in ["email", "password", "workspace_name"] {
        assert!(
            response.body["errors"][field].is_array(),
            "{field}: {}",
            response.text
        );
    }
    // None of it left anything behind.
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credentials")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!((events, users), (0, 0));
    app.stop().await;
}

#[tokio::test]
async fn lists_paginate_filter_sort_search_and_refuse_unknown_parameters() {
    let app = TestApp::start().await;
    let user = app.signup("lists@example.com", "Alpha Base").await;
    for (name, tier) in [
        ("Bravo Works", "pro"),
        ("Charlie Labs", "free"),
        ("Delta Labs", "pro"),
        ("Echo Studio", "starter"),
    ] {
        app.post(
            "/api/v1/workspaces",
            &user,
            json!({"name": name, "tier": tier}),
        )
        .await
        .expect(201);
    }
    // Pagination: 5 workspaces, 2 per page.
    let response = app
        .get("/api/v1/workspaces?per_page=2&page=2&sort=name", &user)
        .await;
    response.expect(200);
    let names: Vec<&str> = response.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Charlie Labs", "Delta Labs"]);
    let meta = &response.body["meta"];
    assert_eq!(
        meta,
        &json!({"current_page": 2, "from": 3, "last_page": 3, "per_page": 2, "to": 4, "total": 5})
    );
    let links = &response.body["links"];
    assert_eq!(
        links["first"],
        "/api/v1/workspaces?per_page=2&sort=name&page=1"
    );
    assert_eq!(
        links["prev"],
        "/api/v1/workspaces?per_page=2&sort=name&page=1"
    );
    assert_eq!(
        links["next"],
        "/api/v1/workspaces?per_page=2&sort=name&page=3"
    );
    assert_eq!(
        links["last"],
        "/api/v1/workspaces?per_page=2&sort=name&page=3"
    );
    // `limit` is an alias; past the end is an empty page with the true total.
    let response = app.get("/api/v1/workspaces?limit=2&page=9", &user).await;
    assert_eq!(response.body["data"], json!([]));
    assert_eq!(response.body["meta"]["total"], 5);
    assert_eq!(response.body["meta"]["from"], json!(null));
    // Filter + search + multi-field sort + fields, checked against the expected rows.
    let response = app
        .get(
            "/api/v1/workspaces?tier=pro&search=labs&sort=-name&fields=name,tier",
            &user,
        )
        .await;
    response.expect(200);
    assert_eq!(
        response.body["data"],
        json!([{"name": "Delta Labs", "tier": "pro"}])
    );
    let response = app
        .get("/api/v1/workspaces?sort=tier,-name&fields=name", &user)
        .await;
    let names: Vec<&str> = response.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|w| w["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "Charlie Labs",
            "Alpha Base",
            "Delta Labs",
            "Bravo Works",
            "Echo Studio"
        ]
    );
    // Time ranges.
    let all = app.get("/api/v1/workspaces?sort=created_at", &user).await;
    let third = all.body["data"][2]["created_at"]
        .as_str()
        .expect("created_at")
        .to_string();
    let response = app
        .get(
            &format!("/api/v1/workspaces?sort=created_at&created_after={third}&fields=name"),
            &user,
        )
        .await;
    assert_eq!(
        response.body["data"],
        json!([{"name": "Delta Labs"}, {"name": "Echo Studio"}]),
        "{}",
        response.text
    );
    // Unknown or malformed parameters are 400, never ignored.
    for bad in [
        "sort=colour",
        "fields=secret",
        "frobnicate=1",
        "per_page=0",
        "per_page=101",
        "page=abc",
        "created_after=yesterday",
        "include=owner",
        "page=1&page=2",
    ] {
        app.get(&format!("/api/v1/workspaces?{bad}"), &user)
            .await
            .expect_error(400, "bad_request");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_matches_responses() {
    let app = TestApp::start().await;
    let response = app
        .call("GET", "/api/v1/openapi.json", None, None, &[])
        .await;
    response.expect(200);
    let doc = &response.body;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let expected: &[(&str, &[&str])] = &[
        ("/auth/signup", &["post"]),
        ("/auth/login", &["post"]),
        ("/auth/session", &["get"]),
        ("/auth/logout", &["post"]),
        ("/workspaces", &["get", "post"]),
        ("/workspaces/{id}", &["get", "patch", "delete"]),
        ("/workspaces/{id}/members", &["get", "post"]),
        ("/workspaces/{id}/members/{user_id}", &["patch", "delete"]),
        ("/api-keys", &["get", "post"]),
        ("/api-keys/{id}", &["get", "patch", "delete"]),
        ("/api-keys/{id}/rotate", &["post"]),
        ("/api-keys/{id}/history", &["get"]),
        ("/projects", &["get", "post"]),
        ("/projects/{id}", &["get", "patch", "delete"]),
        ("/tasks", &["get", "post"]),
        ("/tasks/{id}", &["get", "patch", "delete"]),
        ("/contacts", &["get", "post"]),
        ("/contacts/{id}", &["get", "patch", "delete"]),
        ("/companies", &["get", "post"]),
        ("/companies/{id}", &["get", "patch", "delete"]),
        ("/deals", &["get", "post"]),
        ("/deals/{id}", &["get", "patch", "delete"]),
        ("/documents", &["get", "post"]),
        ("/documents/{id}", &["get", "patch", "delete"]),
    ];
    for (path, methods) in expected {
        for method in *methods {
            assert!(
                paths.get(*path).and_then(|p| p.get(*method)).is_some(),
                "{method} {path} missing from OpenAPI"
            );
        }
    }
    // A list item has exactly the properties its schema documents.
    let user = app.signup("schema@example.com", "Schema").await;
    let item = app.get("/api/v1/workspaces", &user).await.body["data"][0].clone();
    let mut keys: Vec<&String> = item.as_object().expect("item").keys().collect();
    keys.sort();
    let schema = &doc["components"]["schemas"]["WorkspaceOut"]["properties"];
    let mut documented: Vec<&String> = schema.as_object().expect("schema").keys().collect();
    documented.sort();
    assert_eq!(keys, documented);
    // A task item: its fields' schema plus the metadata every record carries.
    let project = app
        .post("/api/v1/projects", &user, serde_json::json!({"name": "P"}))
        .await;
    let task = app
        .post(
            "/api/v1/tasks",
            &user,
            serde_json::json!({"project_id": project.body["data"]["id"], "title": "T"}),
        )
        .await;
    task.expect(201);
    let mut keys: Vec<&String> = task.body["data"]
        .as_object()
        .expect("item")
        .keys()
        .collect();
    keys.sort();
    let schemas = &doc["components"]["schemas"];
    let mut documented: Vec<&String> = ["TaskFields", "RecordMetaOut"]
        .iter()
        .flat_map(|name| {
            schemas[*name]["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name} documented"))
                .keys()
        })
        .collect();
    documented.sort();
    assert_eq!(keys, documented);
    // The interactive reference is served from the binary.
    let docs = app.call("GET", "/docs", None, None, &[]).await;
    docs.expect(200);
    assert!(docs.text.contains("openapi.json"));
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::start().await;
    app.call("GET", "/healthz", None, None, &[])
        .await
        .expect(200);
    let mut ready = app.call("GET", "/readyz", None, None, &[]).await;
    for _ in 0..50 {
        if ready.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        ready = app.call("GET", "/readyz", None, None, &[]).await;
    }
    ready.expect(200);
    assert_eq!(ready.body["database"], "ok");
    let names: Vec<&str> = ready.body["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "api_keys",
            "audit_log",
            "companies",
            "contacts",
            "deals",
            "documents",
            "identity",
            "key_table",
            "projects",
            "seo",
            "tasks",
            "usage_events",
            "webhook_fanout",
            "webhooks"
        ]
    );
    app.signup("metrics@example.com", "Metrics").await;
    let metrics = app.call("GET", "/metrics", None, None, &[]).await;
    metrics.expect(200);
    assert!(metrics.text.contains("pulsar_http_requests_total{method=\"POST\",route=\"/api/v1/auth/signup\",status=\"201\"} 1"), "{}", metrics.text);
    assert!(metrics
        .text
        .contains("pulsar_subscription_stuck{subscriber=\"identity\"} 0"));
    assert!(metrics
        .text
        .contains("pulsar_projection_lag_milliseconds_count{subscriber=\"identity\"}"));
    app.stop().await;
}

/// `/readyz` through `router`, once every subscriber's answer is in (up to 5 s for 200).
async fn readiness(router: &axum::Router) -> pulsar_tests::Response {
    let mut ready = pulsar_tests::call(router, "GET", "/readyz", None, None, &[]).await;
    for _ in 0..100 {
        if ready.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        ready = pulsar_tests::call(router, "GET", "/readyz", None, None, &[]).await;
    }
    ready
}

#[tokio::test]
async fn many_events_of_other_streams_are_not_lag() {
    // A subscriber's checkpoint moves only on the streams it reads: 30 task events past
    // the projects read model's last one are nothing it has to catch up with, on a node
    // that runs the projections and on one that follows them.
    let config = pulsar_api::Config {
        ready_max_lag: 5,
        ..pulsar_tests::test_config()
    };
    let app = TestApp::start_with(config.clone()).await;
    let follower = app
        .another_process_with(config, pulsar_api::runtime::Role::Api)
        .await;
    let user = app.signup("lag@example.com", "Lag").await;
    let project = app
        .created_id("/api/v1/projects", &user, json!({"name": "One"}))
        .await;
    for n in 0..30 {
        app.post(
            "/api/v1/tasks",
            &user,
            json!({"project_id": project, "title": format!("T{n}")}),
        )
        .await
        .expect(201);
    }
    for router in [&app.router, &follower.router] {
        let ready = readiness(router).await;
        ready.expect(200);
        let projects = ready.body["subscriptions"]
            .as_array()
            .expect("subscriptions")
            .iter()
            .find(|s| s["name"] == "projects")
            .expect("projects")
            .clone();
        assert_eq!(projects["behind"], 0, "{projects}");
    }
    follower.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_stuck_projection_turns_readiness_red_and_shows_in_metrics() {
    let app = TestApp::start().await;
    app.signup("stuck@example.com", "Stuck").await;
    // An event no code can decode, as a bad deploy or a hand-edited row might leave.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Workspace', 'ws_poison', 1, 'WorkspaceTeleported', '9.0', '{\"WorkspaceTeleported\": {}}', '{}')",
    )
    .execute(app.pool())
    .await
    .expect("append");
    app.runtime.state.subscriptions.appended();
    // Every subscriber that reads workspace events gets stuck on it (the local key table
    // too, which may get there first): wait for `identity`'s third failure.
    let identity_stuck = |ready: &pulsar_tests::Response| {
        ready.body["subscriptions"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["name"] == "identity" && s["stuck"] == true)
        })
    };
    let mut ready = app.call("GET", "/readyz", None, None, &[]).await;
    for _ in 0..100 {
        if identity_stuck(&ready) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        ready = app.call("GET", "/readyz", None, None, &[]).await;
    }
    ready.expect(503);
    let identity = ready.body["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .iter()
        .find(|s| s["name"] == "identity")
        .expect("identity")
        .clone();
    assert_eq!(identity["stuck"], true, "{identity}");
    assert!(
        identity["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("WorkspaceTeleported")),
        "{identity}"
    );
    let metrics = app.call("GET", "/metrics", None, None, &[]).await;
    assert!(
        metrics
            .text
            .contains("pulsar_subscription_stuck{subscriber=\"identity\"} 1"),
        "{}",
        metrics.text
    );
    // It keeps retrying rather than skipping: the checkpoint stays before the bad event.
    let position: i64 = sqlx::query_scalar(
        "SELECT last_global_position FROM subscription_checkpoints WHERE name = 'identity'",
    )
    .fetch_one(app.pool())
    .await
    .expect("checkpoint");
    let bad: i64 =
        sqlx::query_scalar("SELECT global_position FROM events WHERE aggregate_id = 'ws_poison'")
            .fetch_one(app.pool())
            .await
            .expect("position");
    assert!(position < bad);
    app.stop().await;
}
