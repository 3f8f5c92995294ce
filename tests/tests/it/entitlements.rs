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
