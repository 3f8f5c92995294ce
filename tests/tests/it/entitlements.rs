//! Tier limits under concurrency: creations racing at the limit, on one process and
//! spread over two.

use futures::future::join_all;
use pulsar_api::runtime::Role;
use pulsar_tests::TestApp;
use serde_json::json;

/// A free workspace holds 5 projects; four exist, so one more fits.
async fn at_limit_minus_one(app: &TestApp, email: &str) -> pulsar_tests::User {
    let user = app.signup(email, "Limits").await;
    for n in 0..4 {
        app.post("/api/v1/projects", &user, json!({"name": format!("P{n}")}))
            .await
            .expect(201);
    }
    user
}

async fn live_projects(app: &TestApp, user: &pulsar_tests::User) -> u64 {
    let list = app.get("/api/v1/projects?per_page=100", user).await;
    list.expect(200);
    list.body["meta"]["total"].as_u64().expect("total")
}

fn tally(statuses: &[u16]) -> (usize, usize) {
    let created = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 403).count();
    assert_eq!(created + refused, statuses.len(), "{statuses:?}");
    (created, refused)
}

#[tokio::test]
async fn twenty_concurrent_creates_at_the_limit_let_exactly_one_through() {
    let app = TestApp::start().await;
    let user = at_limit_minus_one(&app, "race@limits.example").await;
    let responses = join_all((0..20).map(|n| {
        app.post(
            "/api/v1/projects",
            &user,
            json!({"name": format!("Racer {n}")}),
        )
    }))
    .await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(tally(&statuses), (1, 19), "{statuses:?}");
    let refused = responses
        .iter()
        .find(|r| r.status == 403)
        .expect("a refusal");
    assert_eq!(refused.body["error"], "feature_limit_reached");
    assert_eq!(live_projects(&app, &user).await, 5);

    // Deleting one frees a place; upgrading the tier lifts the limit.
    let first = app.get("/api/v1/projects?per_page=1", &user).await;
    let id = first.body["data"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    app.delete(&format!("/api/v1/projects/{id}"), &user)
        .await
        .expect(204);
    app.post("/api/v1/projects", &user, json!({"name": "Back in"}))
        .await
        .expect(201);
    app.post("/api/v1/projects", &user, json!({"name": "One too many"}))
        .await
        .expect(403);
    app.patch(
        &format!("/api/v1/workspaces/{}", user.workspace_id),
        &user,
        json!({"tier": "starter"}),
    )
    .await
    .expect(200);
    app.post("/api/v1/projects", &user, json!({"name": "Upgraded"}))
        .await
        .expect(201);
    assert_eq!(live_projects(&app, &user).await, 6);
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creates_spread_over_two_processes_cannot_overshoot() {
    let app = TestApp::start().await;
    let second = app.another_process(Role::Api).await;
    let user = at_limit_minus_one(&app, "nodes@limits.example").await;
    let requests = (0..20).map(|n| {
        let body = json!({"name": format!("Racer {n}")});
        let (app, second, token) = (&app, &second, user.token.clone());
        async move {
            if n % 2 == 0 {
                app.call("POST", "/api/v1/projects", Some(&token), Some(body), &[])
                    .await
                    .status
            } else {
                second
                    .call("POST", "/api/v1/projects", Some(&token), Some(body), &[])
                    .await
                    .status
            }
        }
    });
    let statuses = join_all(requests).await;
    assert_eq!(tally(&statuses), (1, 19), "{statuses:?}");
    assert_eq!(live_projects(&app, &user).await, 5);
    second.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn summary_and_check_agree_with_the_rows_really_present() {
    let app = TestApp::start().await;
    let user = app.signup("summary@limits.example", "Summary").await;
    let mut projects = Vec::new();
    for n in 0..3 {
        let created = app
            .post("/api/v1/projects", &user, json!({"name": format!("P{n}")}))
            .await;
        created.expect(201);
        projects.push(created.body["data"]["id"].as_str().expect("id").to_string());
    }
    app.delete(&format!("/api/v1/projects/{}", projects[0]), &user)
        .await
        .expect(204);
    for n in 0..2 {
        app.post("/api/v1/contacts", &user, json!({"name": format!("C{n}")}))
            .await
            .expect(201);
    }
    let key = app
        .post(
            "/api/v1/api-keys",
            &user,
            json!({"name": "reader", "scopes": ["projects:read"]}),
        )
        .await;
    key.expect(201);
    let revoked = app
        .post(
            "/api/v1/api-keys",
            &user,
            json!({"name": "gone", "scopes": ["projects:read"]}),
        )
        .await;
    let revoked_id = revoked.body["data"]["id"].as_str().expect("id").to_string();
    app.delete(&format!("/api/v1/api-keys/{revoked_id}"), &user)
        .await
        .expect(204);

    let summary = app.get("/api/v1/entitlements/summary", &user).await;
    summary.expect(200);
    let data = &summary.body["data"];
    assert_eq!(data["workspace_id"], user.workspace_id.as_str());
    assert_eq!(data["tier"], "free");
    let e = &data["entitlements"];
    assert_eq!(
        e["projects"],
        json!({"used": 2, "limit": 5, "available": 3, "percentage": 40.0})
    );
    assert_eq!(e["contacts"]["used"], 2);
    assert_eq!(e["tasks"]["used"], 0);
    assert_eq!(e["api_keys"]["used"], 1, "{e}");
    assert_eq!(e["members"]["used"], 1);
    assert!(e["api_calls"]["reset_at"].is_string());
    assert_eq!(e["storage"]["unit"], "bytes");
    assert_eq!(
        data["entitlements"].as_object().expect("map").len(),
        12,
        "every feature"
    );

    let fits = app
        .get(
            "/api/v1/entitlements/check?feature=projects&quantity=3",
            &user,
        )
        .await;
    fits.expect(200);
    assert_eq!(
        fits.body,
        json!({"allowed": true, "feature": "projects", "current_usage": 2, "limit": 5, "available": 3})
    );
    let too_many = app
        .get(
            "/api/v1/entitlements/check?feature=projects&quantity=4",
            &user,
        )
        .await;
    too_many.expect(200);
    assert_eq!(too_many.body["allowed"], false);
    assert_eq!(too_many.body["reason"], "LIMIT_EXCEEDED");
    assert!(too_many.body["upgrade_url"].is_string());
    assert!(too_many.body["message"].is_string());
    let default_one = app
        .get("/api/v1/entitlements/check?feature=contacts", &user)
        .await;
    assert_eq!(default_one.body["allowed"], true);

    for (query, status) in [
        ("feature=bogus", 422),
        ("feature=projects&quantity=0", 422),
        ("feature=projects&quantity=-1", 422),
        ("feature=projects&quantity=99999999999", 422),
        ("quantity=1", 400),
        ("feature=projects&colour=red", 400),
        ("feature=projects&feature=tasks", 400),
    ] {
        let response = app
            .get(&format!("/api/v1/entitlements/check?{query}"), &user)
            .await;
        assert_eq!(response.status, status, "{query}: {}", response.body);
    }
    // A key without `entitlements:read` is refused.
    let token = key.body["data"]["key"].as_str().expect("key").to_string();
    let denied = app
        .call(
            "GET",
            "/api/v1/entitlements/summary",
            Some(&token),
            None,
            &[],
        )
        .await;
    denied.expect_error(403, "access_denied");
    app.stop().await;
}

/// Free workspaces may make 10,000 API calls a month.
const FREE_CALLS: u64 = 10_000;

async fn record(
    app: &TestApp,
    user: &pulsar_tests::User,
    body: serde_json::Value,
) -> pulsar_tests::Response {
    app.post("/api/v1/entitlements/usage", user, body).await
}

#[tokio::test]
async fn recorded_usage_stops_at_the_limit_even_when_concurrent_and_counts_everywhere() {
    let app = TestApp::start().await;
    let user = app.signup("record@limits.example", "Record").await;
    let first = record(
        &app,
        &user,
        json!({"feature": "api_calls", "quantity": 9_000, "metadata": {"job": "import"}}),
    )
    .await;
    first.expect(200);
    assert_eq!(
        first.body,
        json!({"recorded": true, "feature": "api_calls", "current_usage": 9_000, "limit": FREE_CALLS})
    );
    // 1,500 more would pass the limit: nothing is written.
    let over = record(
        &app,
        &user,
        json!({"feature": "api_calls", "quantity": 1_500}),
    )
    .await;
    over.expect(200);
    assert_eq!(
        over.body,
        json!({"recorded": false, "feature": "api_calls", "current_usage": 9_000, "limit": FREE_CALLS})
    );
    // Twenty concurrent recordings of 100 where 1,000 are left: exactly ten land, on two
    // processes.
    let second = app.another_process(Role::Api).await;
    let answers = join_all((0..20).map(|n| {
        let (app, second, token) = (&app, &second, user.token.clone());
        async move {
            let body = Some(json!({"feature": "api_calls", "quantity": 100}));
            let path = "/api/v1/entitlements/usage";
            if n % 2 == 0 {
                app.call("POST", path, Some(&token), body, &[]).await
            } else {
                second.call("POST", path, Some(&token), body, &[]).await
            }
        }
    }))
    .await;
    let recorded = answers
        .iter()
        .filter(|a| {
            a.expect(200);
            a.body["recorded"] == true
        })
        .count();
    assert_eq!(recorded, 10);
    second.stop().await;
    // The summary, /usage and the event log agree: 10,000 recorded in 11 events.
    let summary = app.get("/api/v1/entitlements/summary", &user).await;
    assert_eq!(
        summary.body["data"]["entitlements"]["api_calls"]["used"],
        FREE_CALLS
    );
    assert_eq!(
        summary.body["data"]["entitlements"]["api_calls"]["percentage"],
        100.0
    );
    let from = chrono::Utc::now() - chrono::TimeDelta::days(1);
    let to = chrono::Utc::now() + chrono::TimeDelta::days(1);
    let series = app
        .get(
            &format!(
                "/api/v1/usage?feature=api_calls&granularity=month&from={}&to={}",
                from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                to.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            &user,
        )
        .await;
    series.expect(200);
    let total: i64 = series.body["data"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["count"].as_i64().expect("count"))
        .sum();
    assert_eq!(total, FREE_CALLS as i64, "{}", series.body);
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'")
            .fetch_one(app.pool())
            .await
            .expect("count");
    assert_eq!(events, 11);
    let metadata: serde_json::Value = sqlx::query_scalar(
        "SELECT payload->'UsageRecorded'->'metadata' FROM events
          WHERE event_type = 'UsageRecorded' ORDER BY sequence, aggregate_id LIMIT 1",
    )
    .fetch_one(app.pool())
    .await
    .expect("metadata");
    assert_eq!(metadata, json!({"job": "import"}));

    // Bad input: 422 with the field named, 400 for unknown members, 403 without the scope.
    for (body, field) in [
        (json!({"feature": "projects", "quantity": 1}), "feature"),
        (json!({"feature": "nonsense", "quantity": 1}), "feature"),
        (json!({"feature": "api_calls", "quantity": 0}), "quantity"),
        (json!({"feature": "api_calls", "quantity": -4}), "quantity"),
        (
            json!({"feature": "api_calls", "quantity": 1, "metadata": [1]}),
            "metadata",
        ),
        (
            json!({"feature": "api_calls", "quantity": 1, "metadata": {"x": "y".repeat(5000)}}),
            "metadata",
        ),
    ] {
        let refused = record(&app, &user, body.clone()).await;
        refused.expect_error(422, "validation_failed");
        assert!(
            refused.body["errors"][field].is_array(),
            "{body}: {}",
            refused.body
        );
    }
    let unknown = record(
        &app,
        &user,
        json!({"feature": "api_calls", "quantity": 1, "by": "me"}),
    )
    .await;
    assert!(matches!(unknown.status, 400 | 422), "{}", unknown.status);
    let key = app
        .post(
            "/api/v1/api-keys",
            &user,
            json!({"name": "reader", "scopes": ["entitlements:read"]}),
        )
        .await;
    let key = key.body["data"]["key"].as_str().expect("key").to_string();
    let denied = app
        .call(
            "POST",
            "/api/v1/entitlements/usage",
            Some(&key),
            Some(json!({"feature": "api_calls", "quantity": 1})),
            &[],
        )
        .await;
    denied.expect_error(403, "access_denied");
    app.stop().await;
}

/// Alerts a receiver got, as (feature, threshold).
fn alerts(received: &[pulsar_tests::receiver::Received]) -> Vec<(String, u64)> {
    received
        .iter()
        .map(|r| {
            let body = r.json();
            assert_eq!(body["type"], "entitlements.threshold_reached");
            (
                body["data"]["feature"]
                    .as_str()
                    .expect("feature")
                    .to_string(),
                body["data"]["threshold"].as_u64().expect("threshold"),
            )
        })
        .collect()
}

#[tokio::test]
async fn crossing_80_and_100_percent_sends_one_webhook_each_per_month() {
    let app = TestApp::start().await;
    let receiver = pulsar_tests::receiver::Receiver::start().await;
    let user = app.signup("alerts@limits.example", "Alerts").await;
    app.post(
        "/api/v1/webhooks",
        &user,
        json!({"url": receiver.url("/alerts"), "events": ["entitlements.*"]}),
    )
    .await
    .expect(201);
    let wait = std::time::Duration::from_secs(15);
    // Projects: the 4th of 5 is 80%, the 5th is 100%.
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(
            app.created_id("/api/v1/projects", &user, json!({"name": format!("P{n}")}))
                .await,
        );
    }
    let got = receiver.wait_for("/alerts", 1, wait).await;
    assert_eq!(alerts(&got), [("projects".to_string(), 80)]);
    let data = got[0].json()["data"].clone();
    assert_eq!(data["used"], 4);
    assert_eq!(data["limit"], 5);
    assert_eq!(data["workspace_id"], user.workspace_id.as_str());
    assert_eq!(
        data["period"],
        chrono::Utc::now().format("%Y-%m").to_string()
    );
    assert!(
        data.get("reset_at").is_none(),
        "projects do not reset: {data}"
    );
    app.post("/api/v1/projects", &user, json!({"name": "P4"}))
        .await
        .expect(201);
    let got = receiver.wait_for("/alerts", 2, wait).await;
    assert_eq!(
        alerts(&got),
        [("projects".to_string(), 80), ("projects".to_string(), 100)]
    );
    // Falling below and climbing again in the same month alerts nobody again.
    app.delete(&format!("/api/v1/projects/{}", ids[0]), &user)
        .await
        .expect(204);
    app.post("/api/v1/projects", &user, json!({"name": "Again"}))
        .await
        .expect(201);
    // API calls recorded straight past both thresholds: both alerts, 80 then 100, with
    // the monthly reset.
    record(
        &app,
        &user,
        json!({"feature": "api_calls", "quantity": FREE_CALLS}),
    )
    .await
    .expect(200);
    let got = receiver.wait_for("/alerts", 4, wait).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got_all = receiver.received("/alerts");
    assert_eq!(got_all.len(), 4, "{:?}", alerts(&got_all));
    assert_eq!(
        alerts(&got)[2..],
        [
            ("api_calls".to_string(), 80),
            ("api_calls".to_string(), 100)
        ]
    );
    assert!(got[3].json()["data"]["reset_at"].is_string());
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ThresholdReached'")
            .fetch_one(app.pool())
            .await
            .expect("count");
    assert_eq!(stored, 4);
    app.stop().await;
}

#[tokio::test]
async fn keys_endpoints_and_members_stop_at_their_tier_limits() {
    let app = TestApp::start().await;
    let user = app.signup("others@limits.example", "Others").await;
    // Webhook endpoints: 5 on free.
    for n in 0..5 {
        app.post(
            "/api/v1/webhooks",
            &user,
            json!({"url": format!("https://hooks{n}.invalid/x"), "events": ["*"]}),
        )
        .await
        .expect(201);
    }
    let refused = app
        .post(
            "/api/v1/webhooks",
            &user,
            json!({"url": "https://hooks9.invalid/x", "events": ["*"]}),
        )
        .await;
    refused.expect_error(403, "feature_limit_reached");
    assert_eq!(refused.body["feature"], "webhooks");
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_secrets")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(secrets, 5, "a refused endpoint leaves no secret behind");
    // Members: 5 on free, the owner included.
    for n in 0..5 {
        let email = format!("member{n}@limits.example");
        app.signup(&email, "Own").await;
        let added = app
            .post(
                &format!("/api/v1/workspaces/{}/members", user.workspace_id),
                &user,
                json!({"email": email, "role": "member"}),
            )
            .await;
        if n < 4 {
            added.expect(201);
        } else {
            added.expect_error(403, "feature_limit_reached");
            assert_eq!(added.body["feature"], "members");
        }
    }
    // API keys: 25 on free, concurrently at the edge: exactly the room left gets in.
    for n in 0..20 {
        app.post(
            "/api/v1/api-keys",
            &user,
            json!({"name": format!("k{n}"), "scopes": ["projects:read"]}),
        )
        .await
        .expect(201);
    }
    let statuses: Vec<u16> = join_all((0..10).map(|n| {
        app.post(
            "/api/v1/api-keys",
            &user,
            json!({"name": format!("race{n}"), "scopes": ["projects:read"]}),
        )
    }))
    .await
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(tally(&statuses), (5, 5), "{statuses:?}");
    let summary = app.get("/api/v1/entitlements/summary", &user).await;
    let e = &summary.body["data"]["entitlements"];
    assert_eq!(e["api_keys"]["used"], 25);
    assert_eq!(e["webhooks"]["used"], 5);
    assert_eq!(e["members"]["used"], 5);
    app.stop().await;
}
