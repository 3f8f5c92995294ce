//! `Idempotency-Key` across the API (API.md section 3).

use std::sync::Arc;

use pulsar_tests::TestApp;
use serde_json::json;

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(app.pool())
        .await
        .expect("count")
}

#[tokio::test]
async fn a_repeat_replays_the_first_answer_without_doing_the_work_again() {
    let app = TestApp::start().await;
    let user = app.signup("idem@example.com", "Idem").await;
    let body = json!({"name": "Once", "scopes": ["api-keys:read"]});
    let first = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(&user.token),
            Some(body.clone()),
            &[("idempotency-key", "create-once-1")],
        )
        .await;
    first.expect(201);
    let second = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(&user.token),
            Some(body.clone()),
            &[("idempotency-key", "create-once-1")],
        )
        .await;
    assert_eq!(second.status, 201);
    assert_eq!(
        second.body, first.body,
        "the same body, secret included, is replayed"
    );
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(count(&app, "SELECT count(*) FROM api_key_secrets").await, 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM events WHERE event_type = 'ApiKeyCreated'"
        )
        .await,
        1
    );

    // The same key with another body is refused, and does nothing.
    let reused = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(&user.token),
            Some(json!({"name": "Twice", "scopes": ["api-keys:read"]})),
            &[("idempotency-key", "create-once-1")],
        )
        .await;
    reused.expect_error(422, "idempotency_key_reused");
    assert_eq!(count(&app, "SELECT count(*) FROM api_key_secrets").await, 1);

    // Keys belong to their principal: another user's same key is a new request.
    let other = app.signup("idem2@example.com", "Idem Two").await;
    app.call(
        "POST",
        "/api/v1/api-keys",
        Some(&other.token),
        Some(body),
        &[("idempotency-key", "create-once-1")],
    )
    .await
    .expect(201);

    // DELETE repeats get the first 204, not a 404.
    let id = first.body["data"]["id"].as_str().expect("id");
    let path = format!("/api/v1/api-keys/{id}");
    for _ in 0..2 {
        app.call(
            "DELETE",
            &path,
            Some(&user.token),
            None,
            &[("idempotency-key", "revoke-1")],
        )
        .await
        .expect(204);
    }
    app.call("DELETE", &path, Some(&user.token), None, &[])
        .await
        .expect_error(404, "not_found");

    // Bad keys are refused before anything runs.
    let long = "k".repeat(256);
    app.call(
        "POST",
        "/api/v1/workspaces",
        Some(&user.token),
        Some(json!({"name": "x"})),
        &[("idempotency-key", &long)],
    )
    .await
    .expect_error(400, "bad_request");
    // Errors (4xx) are kept too: the same bad request gets the same answer.
    for _ in 0..2 {
        app.call(
            "POST",
            "/api/v1/workspaces",
            Some(&user.token),
            Some(json!({"name": ""})),
            &[("idempotency-key", "bad-1")],
        )
        .await
        .expect_error(422, "validation_failed");
    }
    app.stop().await;
}

#[tokio::test]
async fn ten_concurrent_repeats_create_one_resource() {
    let app = Arc::new(TestApp::start().await);
    let user = app.signup("race-idem@example.com", "Race Idem").await;
    let before = count(&app, "SELECT count(*) FROM workspaces").await;
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            let token = user.token.clone();
            tokio::spawn(async move {
                app.call(
                    "POST",
                    "/api/v1/workspaces",
                    Some(&token),
                    Some(json!({"name": "Exactly One", "slug": "exactly-one"})),
                    &[("idempotency-key", "ws-race-1")],
                )
                .await
            })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        let response = task.await.expect("task");
        match response.status {
            201 => created.push(response.body),
            409 => {
                response.expect_error(409, "idempotency_conflict");
            }
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    assert!(!created.is_empty());
    assert!(
        created.iter().all(|b| *b == created[0]),
        "every success is the same answer"
    );
    // And sequential repeats after the race all replay it.
    for _ in 0..3 {
        let again = app
            .call(
                "POST",
                "/api/v1/workspaces",
                Some(&user.token),
                Some(json!({"name": "Exactly One", "slug": "exactly-one"})),
                &[("idempotency-key", "ws-race-1")],
            )
            .await;
        assert_eq!(again.status, 201);
        assert_eq!(again.body, created[0]);
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM workspaces").await,
        before + 1
    );
}
