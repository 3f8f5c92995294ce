//! `?as_of=`: a resource as it stood at an instant, folded from its own events.
//!
//! The instants are the `recorded_at` of the audit entries themselves (microsecond
//! precision), so "just before" and "at" an event are exact.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use pulsar_tests::TestApp;
use serde_json::{json, Value};

fn at(entry: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(entry["recorded_at"].as_str().expect("recorded_at"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The `recorded_at` of each of an aggregate's `expected` audit entries, in order (the
/// audit log is a subscriber: this waits for it to have them all).
async fn instants(
    app: &TestApp,
    user: &pulsar_tests::User,
    id: &str,
    expected: usize,
) -> Vec<DateTime<Utc>> {
    for _ in 0..100 {
        let response = app
            .get(&format!("/api/v1/audit/events?aggregate_id={id}"), user)
            .await;
        response.expect(200);
        let entries = response.body["data"].as_array().expect("entries");
        if entries.len() >= expected {
            assert_eq!(entries.len(), expected, "{}", response.body);
            return entries.iter().map(at).collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the audit log never had {expected} entries of {id}");
}

#[tokio::test]
async fn a_keys_scopes_as_of_three_instants_and_nothing_before_it_existed() {
    let app = TestApp::start().await;
    let owner = app.signup("asof@audit.example", "As of").await;
    let key = app
        .created_id(
            "/api/v1/api-keys",
            &owner,
            json!({"name": "ci", "scopes": ["projects:read"]}),
        )
        .await;
    let path = format!("/api/v1/api-keys/{key}");
    app.patch(
        &path,
        &owner,
        json!({"scopes": ["projects:read", "projects:write"]}),
    )
    .await
    .expect(200);
    app.patch(&path, &owner, json!({"scopes": ["tasks:read"]}))
        .await
        .expect(200);
    app.delete(&path, &owner).await.expect(204);

    let times = instants(&app, &owner, &key, 4).await;
    let as_of = |t: DateTime<Utc>| {
        let path = format!("{path}?as_of={}", text(t));
        let app = &app;
        let owner = &owner;
        async move { app.get(&path, owner).await }
    };
    let scopes_then = [
        (times[0], json!(["projects:read"]), "active"),
        // Between two changes: still the first.
        (
            times[1] - Duration::microseconds(1),
            json!(["projects:read"]),
            "active",
        ),
        (
            times[1],
            json!(["projects:read", "projects:write"]),
            "active",
        ),
        (times[2], json!(["tasks:read"]), "active"),
        (times[3], json!(["tasks:read"]), "revoked"),
    ];
    for (t, scopes, status) in scopes_then {
        let response = as_of(t).await;
        response.expect(200);
        let item = &response.body["data"];
        assert_eq!(item["id"], key.as_str());
        assert_eq!(item["scopes"], scopes, "as of {t}: {item}");
        assert_eq!(item["status"], status, "as of {t}: {item}");
    }
    // Today's key is revoked with the last scopes; the past does not leak into it.
    let now = app.get(&path, &owner).await;
    assert_eq!(now.body["data"]["scopes"], json!(["tasks:read"]));
    assert_eq!(now.body["data"]["status"], "revoked");

    // Before it was created it did not exist.
    let before = as_of(times[0] - Duration::microseconds(1)).await;
    before.expect(404);
    assert_eq!(before.body["error"], "not_found", "{}", before.body);

    // Another workspace's key is 404 at any instant.
    let other = app.signup("other@audit.example", "Other").await;
    app.get(&format!("{path}?as_of={}", text(times[2])), &other)
        .await
        .expect(404);
    app.stop().await;
}

#[tokio::test]
async fn a_rotating_key_is_expired_as_of_a_moment_after_its_grace_period() {
    let app = TestApp::start().await;
    let owner = app.signup("grace@audit.example", "Grace").await;
    let key = app
        .created_id(
            "/api/v1/api-keys",
            &owner,
            json!({"name": "ci", "scopes": ["projects:read"]}),
        )
        .await;
    let rotated = app
        .post(
            &format!("/api/v1/api-keys/{key}/rotate"),
            &owner,
            json!({"grace_period_hours": 1}),
        )
        .await;
    rotated.expect(200);
    let times = instants(&app, &owner, &key, 2).await;
    let path = format!("/api/v1/api-keys/{key}");
    let during = app
        .get(&format!("{path}?as_of={}", text(times[1])), &owner)
        .await;
    assert_eq!(during.body["data"]["status"], "rotating", "{}", during.body);
    let after = times[1] + Duration::hours(2);
    let later = app
        .get(&format!("{path}?as_of={}", text(after)), &owner)
        .await;
    assert_eq!(later.body["data"]["status"], "expired", "{}", later.body);
    app.stop().await;
}

#[tokio::test]
async fn records_workspaces_and_webhooks_as_of_an_instant() {
    let app = TestApp::start().await;
    let owner = app.signup("records@audit.example", "Records").await;

    // A project: created, renamed, deleted.
    let project = app
        .created_id("/api/v1/projects", &owner, json!({"name": "Apollo"}))
        .await;
    let path = format!("/api/v1/projects/{project}");
    app.patch(&path, &owner, json!({"name": "Artemis"}))
        .await
        .expect(200);
    app.delete(&path, &owner).await.expect(204);
    let times = instants(&app, &owner, &project, 3).await;
    let first = app
        .get(&format!("{path}?as_of={}", text(times[0])), &owner)
        .await;
    first.expect(200);
    assert_eq!(first.body["data"]["name"], "Apollo");
    assert_eq!(first.body["data"]["version"], 1);
    assert!(
        first.body["data"].get("changed").is_none(),
        "{}",
        first.body
    );
    let renamed = app
        .get(
            &format!("{path}?as_of={}&fields=id,name", text(times[1])),
            &owner,
        )
        .await;
    renamed.expect(200);
    assert_eq!(
        renamed.body["data"],
        json!({"id": project, "name": "Artemis"})
    );
    // Deleted by then, and not yet created before.
    app.get(&format!("{path}?as_of={}", text(times[2])), &owner)
        .await
        .expect(404);
    app.get(
        &format!(
            "{path}?as_of={}",
            text(times[0] - Duration::microseconds(1))
        ),
        &owner,
    )
    .await
    .expect(404);
    // Relations are today's; they do not mix with the past.
    app.get(
        &format!("{path}?as_of={}&include=tasks", text(times[1])),
        &owner,
    )
    .await
    .expect(400);

    // The workspace, renamed.
    let workspace = format!("/api/v1/workspaces/{}", owner.workspace_id);
    app.patch(&workspace, &owner, json!({"name": "Renamed"}))
        .await
        .expect(200);
    let times = instants(&app, &owner, &owner.workspace_id, 3).await;
    let then = app
        .get(&format!("{workspace}?as_of={}", text(times[0])), &owner)
        .await;
    then.expect(200);
    assert_eq!(then.body["data"]["name"], "Records");
    let now = app.get(&workspace, &owner).await;
    assert_eq!(now.body["data"]["name"], "Renamed");

    // A webhook endpoint, changed then deleted.
    let hook = app
        .created_id(
            "/api/v1/webhooks",
            &owner,
            json!({"url": "https://hooks.example.com/a", "events": ["projects.*"]}),
        )
        .await;
    let hook_path = format!("/api/v1/webhooks/{hook}");
    app.patch(&hook_path, &owner, json!({"events": ["tasks.*"]}))
        .await
        .expect(200);
    app.delete(&hook_path, &owner).await.expect(204);
    let times = instants(&app, &owner, &hook, 3).await;
    let then = app
        .get(&format!("{hook_path}?as_of={}", text(times[0])), &owner)
        .await;
    then.expect(200);
    assert_eq!(then.body["data"]["events"], json!(["projects.*"]));
    assert!(then.body["data"].get("secret").is_none());
    let changed = app
        .get(&format!("{hook_path}?as_of={}", text(times[1])), &owner)
        .await;
    assert_eq!(changed.body["data"]["events"], json!(["tasks.*"]));
    app.get(&format!("{hook_path}?as_of={}", text(times[2])), &owner)
        .await
        .expect(404);
    app.stop().await;
}

#[tokio::test]
async fn single_gets_refuse_a_bad_instant_and_parameters_they_do_not_know() {
    let app = TestApp::start().await;
    let owner = app.signup("params@audit.example", "Params").await;
    let key = app
        .created_id(
            "/api/v1/api-keys",
            &owner,
            json!({"name": "ci", "scopes": ["projects:read"]}),
        )
        .await;
    let project = app
        .created_id("/api/v1/projects", &owner, json!({"name": "P"}))
        .await;
    let items = [
        format!("/api/v1/api-keys/{key}"),
        format!("/api/v1/projects/{project}"),
        format!("/api/v1/workspaces/{}", owner.workspace_id),
    ];
    for item in &items {
        for query in [
            "as_of=yesterday",
            "as_of=2026-13-01T00:00:00Z",
            "asof=2026-12-01T00:00:00Z",
            "colour=red",
        ] {
            let response = app.get(&format!("{item}?{query}"), &owner).await;
            response.expect(400);
            assert_eq!(
                response.body["error"], "bad_request",
                "{item}?{query}: {}",
                response.body
            );
        }
        app.get(&format!("{item}?as_of=2999-01-01T00:00:00Z"), &owner)
            .await
            .expect(200);
    }
    app.stop().await;
}
