//! Webhooks end to end: the real server, a real receiver on a local port, signatures
//! checked with the official verifiers (PyPI `stripe` and `standardwebhooks`), retries,
//! dead letters, disabling, manual retry, recover, replay, rotation, the SSRF guard,
//! and two dispatchers on one database.

use std::time::{Duration, Instant};

use pulsar_dispatcher::DispatcherConfig;
use pulsar_tests::receiver::{Answer, Received, Receiver};
use pulsar_tests::{test_config, ProcessRole, TestApp, User};
use serde_json::{json, Value};

const V1: &str = "/api/v1";
const WAIT: Duration = Duration::from_secs(15);

async fn setup() -> (TestApp, User, Receiver) {
    let app = TestApp::start().await;
    let user = app.signup("hooks@example.com", "Hooks").await;
    (app, user, Receiver::start().await)
}

/// Creates an endpoint; returns its id and secret.
async fn endpoint(app: &TestApp, user: &User, url: &str, events: Value) -> (String, String) {
    let response = app
        .post(
            &format!("{V1}/webhooks"),
            user,
            json!({"url": url, "events": events}),
        )
        .await;
    response.expect(201);
    let data = &response.body["data"];
    let secret = data["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (data["id"].as_str().expect("id").to_string(), secret)
}

async fn project(app: &TestApp, user: &User, name: &str) -> String {
    let response = app
        .post(&format!("{V1}/projects"), user, json!({"name": name}))
        .await;
    response.expect(201);
    response.body["data"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// Creates `n` contacts concurrently; returns the tasks, each asserting its 201.
fn create_contacts(app: &TestApp, user: &User, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    (0..n)
        .map(|n| {
            let router = app.router.clone();
            let token = user.token.clone();
            tokio::spawn(async move {
                pulsar_tests::call(
                    &router,
                    "POST",
                    "/api/v1/contacts",
                    Some(&token),
                    Some(json!({"name": format!("Contact {n}")})),
                    &[],
                )
                .await
                .expect(201);
            })
        })
        .collect()
}

async fn deliveries(app: &TestApp, user: &User, hook: &str, query: &str) -> Vec<Value> {
    let response = app
        .get(&format!("{V1}/webhooks/{hook}/deliveries{query}"), user)
        .await;
    response.expect(200);
    response.body["data"].as_array().expect("list").clone()
}

/// Polls the endpoint's deliveries until `done` holds for the list.
async fn wait_deliveries(
    app: &TestApp,
    user: &User,
    hook: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = deliveries(app, user, hook, "").await;
        if done(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never settled: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Verifies a received request with the official libraries, for each secret.
fn verify_with_official_libraries(request: &Received, secrets: &[&str]) {
    const SCRIPT: &str = r#"
import json, sys
import stripe
from standardwebhooks.webhooks import Webhook
d = json.load(sys.stdin)
for secret in d["secrets"]:
    stripe.WebhookSignature.verify_header(d["body"], d["pulsar"], secret, tolerance=300)
    Webhook(secret).verify(d["body"], {"webhook-id": d["id"], "webhook-timestamp": d["ts"],
                                       "webhook-signature": d["standard"]})
    for bad in (d["body"] + " ",):
        try:
            stripe.WebhookSignature.verify_header(bad, d["pulsar"], secret, tolerance=300)
            sys.exit("stripe accepted a tampered body")
        except stripe.SignatureVerificationError:
            pass
        try:
            Webhook(secret).verify(bad, {"webhook-id": d["id"], "webhook-timestamp": d["ts"],
                                         "webhook-signature": d["standard"]})
            sys.exit("standardwebhooks accepted a tampered body")
        except Exception:
            pass
print("verified")
"#;
    let input = json!({
        "body": request.body,
        "pulsar": request.header("x-pulsar-signature"),
        "id": request.header("webhook-id"),
        "ts": request.header("webhook-timestamp"),
        "standard": request.header("webhook-signature"),
        "secrets": secrets,
    });
    let (ok, stdout, stderr) = pulsar_tests::python(SCRIPT, input.to_string().as_bytes());
    assert!(
        ok && stdout.contains("verified"),
        "official verifiers refused: {stdout}{stderr}"
    );
}

#[tokio::test]
async fn a_created_project_arrives_signed_and_verified_by_the_official_libraries() {
    let (app, user, receiver) = setup().await;
    let (hook, secret) = endpoint(
        &app,
        &user,
        &receiver.url("/projects"),
        json!(["projects.*"]),
    )
    .await;
    let (tasks_hook, _) = endpoint(
        &app,
        &user,
        &receiver.url("/tasks"),
        json!(["tasks.created"]),
    )
    .await;
    let (all_hook, _) = endpoint(&app, &user, &receiver.url("/all"), json!(["*"])).await;

    // The list shows the endpoint, never its secret.
    let listed = app.get(&format!("{V1}/webhooks"), &user).await;
    listed.expect(200);
    assert_eq!(listed.body["meta"]["total"], 3);
    assert!(!listed.text.contains(&secret));

    let project_id = project(&app, &user, "Launch").await;
    let got = receiver.wait_for("/projects", 1, WAIT).await;
    let request = &got[0];
    let body = request.json();
    assert_eq!(body["type"], "projects.created");
    assert_eq!(body["data"]["id"], project_id);
    assert_eq!(body["data"]["name"], "Launch");
    assert_eq!(body["workspace_id"], user.workspace_id);
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-pulsar-event"), "projects.created");
    assert_eq!(
        request.header("webhook-id"),
        body["id"].as_str().expect("id")
    );
    assert!(request.header("x-pulsar-delivery-id").starts_with("dlv_"));
    let t = request.header("x-pulsar-signature-timestamp");
    assert_eq!(request.header("webhook-timestamp"), t);
    assert!(request
        .header("x-pulsar-signature")
        .starts_with(&format!("t={t},v1=")));
    assert!(request.header("webhook-signature").starts_with("v1,"));
    verify_with_official_libraries(request, &[&secret]);

    // The wildcard got it too (same event id, same body); the tasks endpoint did not.
    let all = receiver.wait_for("/all", 1, WAIT).await;
    assert_eq!(all[0].header("webhook-id"), request.header("webhook-id"));
    assert_eq!(all[0].body, request.body);
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.len() == 1 && l[0]["status"] == "success"
    })
    .await;
    assert_eq!(list[0]["attempt"], 1);
    assert_eq!(list[0]["response_code"], 200);
    assert!(deliveries(&app, &user, &tasks_hook, "").await.is_empty());
    assert_eq!(deliveries(&app, &user, &all_hook, "").await.len(), 1);
    assert!(receiver.received("/tasks").is_empty());

    // The detail has the request body and the attempt.
    let delivery_id = list[0]["id"].as_str().expect("id");
    let detail = app
        .get(
            &format!("{V1}/webhooks/{hook}/deliveries/{delivery_id}"),
            &user,
        )
        .await;
    detail.expect(200);
    assert_eq!(detail.body["data"]["request_body"], body);
    assert_eq!(detail.body["data"]["response_body"], "ok");
    let attempts = detail.body["data"]["attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["number"], 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert!(attempts[0]["duration_ms"].is_number());

    // Counters on the endpoint.
    let got = app.get(&format!("{V1}/webhooks/{hook}"), &user).await;
    got.expect(200);
    assert_eq!(got.body["data"]["success_count"], 1);
    assert_eq!(got.body["data"]["consecutive_failures"], 0);
    assert!(got.body["data"]["last_delivery_at"].is_string());

    // No secret in any event.
    let leaked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'")
            .bind(secret.trim_start_matches("whsec_"))
            .fetch_one(app.pool())
            .await
            .expect("query");
    assert_eq!(leaked, 0);
    app.stop().await;
}

#[tokio::test]
async fn fail_fail_succeed_gives_three_attempts_and_one_success() {
    let (app, user, receiver) = setup().await;
    receiver.script("/flaky", [Answer::status(500), Answer::status(502)]);
    let (hook, _) = endpoint(
        &app,
        &user,
        &receiver.url("/flaky"),
        json!(["projects.created"]),
    )
    .await;
    project(&app, &user, "Flaky").await;
    let got = receiver.wait_for("/flaky", 3, WAIT).await;
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.first().is_some_and(|d| d["status"] == "success")
    })
    .await;
    assert_eq!(list[0]["attempt"], 3);
    // Same message every time.
    assert!(got
        .iter()
        .all(|r| r.header("webhook-id") == got[0].header("webhook-id")));
    assert!(got.iter().all(|r| r.body == got[0].body));
    let detail = app
        .get(
            &format!(
                "{V1}/webhooks/{hook}/deliveries/{}",
                list[0]["id"].as_str().expect("id")
            ),
            &user,
        )
        .await;
    let codes: Vec<i64> = detail.body["data"]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["status_code"].as_i64().expect("code"))
        .collect();
    assert_eq!(codes, [500, 502, 200]);
    let endpoint = app.get(&format!("{V1}/webhooks/{hook}"), &user).await;
    assert_eq!(endpoint.body["data"]["success_count"], 1);
    assert_eq!(endpoint.body["data"]["failure_count"], 2);
    assert_eq!(endpoint.body["data"]["consecutive_failures"], 0);
    assert_eq!(
        receiver.received("/flaky").len(),
        3,
        "nothing after the success"
    );
    app.stop().await;
}

#[tokio::test]
async fn always_failing_ends_dead_then_recover_and_retry_deliver_again_with_the_same_id() {
    let (app, user, receiver) = setup().await;
    receiver.always("/down", Answer::status(503));
    let (hook, _) = endpoint(&app, &user, &receiver.url("/down"), json!(["projects.*"])).await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    project(&app, &user, "Doomed").await;
    // Three delays in the test schedule: four attempts, then dead.
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.first().is_some_and(|d| d["status"] == "dead")
    })
    .await;
    assert_eq!(list[0]["attempt"], 4);
    assert_eq!(list[0]["response_code"], 503);
    assert!(list[0]["next_retry_at"].is_null());
    assert_eq!(receiver.received("/down").len(), 4);
    let dead = deliveries(&app, &user, &hook, "?status=dead").await;
    assert_eq!(dead.len(), 1);
    assert!(deliveries(&app, &user, &hook, "?status=success")
        .await
        .is_empty());
    let bad = app
        .get(
            &format!("{V1}/webhooks/{hook}/deliveries?status=lost"),
            &user,
        )
        .await;
    bad.expect(400);
    let endpoint = app.get(&format!("{V1}/webhooks/{hook}"), &user).await;
    assert_eq!(endpoint.body["data"]["consecutive_failures"], 4);

    // The receiver is back: recover queues the dead delivery once.
    receiver.always("/down", Answer::status(200));
    let recover = app
        .post(
            &format!("{V1}/webhooks/{hook}/recover"),
            &user,
            json!({"since": started}),
        )
        .await;
    recover.expect(202);
    assert_eq!(recover.body["data"]["queued"], 1);
    let again = app
        .post(
            &format!("{V1}/webhooks/{hook}/recover"),
            &user,
            json!({"since": started}),
        )
        .await;
    again.expect(202);
    assert_eq!(again.body["data"]["queued"], 0, "queued once, not twice");
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.first().is_some_and(|d| d["status"] == "success")
    })
    .await;
    let got = receiver.received("/down");
    assert_eq!(got.len(), 5, "recovered once");
    assert_eq!(got[4].header("webhook-id"), got[0].header("webhook-id"));
    assert_eq!(got[4].body, got[0].body);
    assert_eq!(list[0]["attempt"], 5);

    // A success cannot be retried...
    let delivery_id = list[0]["id"].as_str().expect("id").to_string();
    let retry = app
        .post(
            &format!("{V1}/webhooks/{hook}/deliveries/{delivery_id}/retry"),
            &user,
            json!({}),
        )
        .await;
    retry.expect_error(400, "cannot_retry");

    // ...a failed one can, and it goes out again with the same webhook-id.
    receiver.always("/down", Answer::status(500));
    project(&app, &user, "Second").await;
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.len() == 2 && l.iter().any(|d| d["status"] == "dead")
    })
    .await;
    let dead = list.iter().find(|d| d["status"] == "dead").expect("dead");
    let dead_id = dead["id"].as_str().expect("id");
    let before = receiver.received("/down").len();
    receiver.always("/down", Answer::status(200));
    let retry = app
        .post(
            &format!("{V1}/webhooks/{hook}/deliveries/{dead_id}/retry"),
            &user,
            json!({}),
        )
        .await;
    retry.expect(200);
    assert_eq!(retry.body["message"], "Delivery queued for retry.");
    assert_eq!(retry.body["data"]["status"], "pending");
    assert_eq!(retry.body["data"]["id"], dead_id);
    let got = receiver.wait_for("/down", before + 1, WAIT).await;
    assert_eq!(
        got[before].header("webhook-id"),
        got[before - 1].header("webhook-id")
    );
    // Another workspace cannot see or retry it.
    let other = app.signup("other@example.com", "Other").await;
    app.post(
        &format!("{V1}/webhooks/{hook}/deliveries/{dead_id}/retry"),
        &other,
        json!({}),
    )
    .await
    .expect_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (app, user, receiver) = setup().await;
    receiver.script(
        "/busy",
        [Answer {
            headers: vec![("retry-after", "2".into())],
            ..Answer::status(429)
        }],
    );
    endpoint(
        &app,
        &user,
        &receiver.url("/busy"),
        json!(["projects.created"]),
    )
    .await;
    project(&app, &user, "Busy").await;
    let got = receiver.wait_for("/busy", 2, WAIT).await;
    let waited = got[1].at - got[0].at;
    // The schedule says 200 ms; the receiver asked for 2 s.
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_other_endpoints_hear_of_it() {
    let (app, user, receiver) = setup().await;
    receiver.always("/gone", Answer::status(410));
    let (hook, _) = endpoint(&app, &user, &receiver.url("/gone"), json!(["projects.*"])).await;
    let (watcher, _) = endpoint(
        &app,
        &user,
        &receiver.url("/watch"),
        json!(["webhooks.disabled"]),
    )
    .await;
    project(&app, &user, "Gone").await;
    let got = receiver.wait_for("/watch", 1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "webhooks.disabled");
    assert_eq!(body["data"]["id"], hook);
    assert_eq!(body["data"]["is_active"], false);
    assert!(body["data"]["disabled_reason"]
        .as_str()
        .is_some_and(|r| r.contains("410")));
    assert_eq!(receiver.received("/gone").len(), 1, "410 is not retried");
    let endpoint = app.get(&format!("{V1}/webhooks/{hook}"), &user).await;
    assert_eq!(endpoint.body["data"]["is_active"], false);
    assert!(endpoint.body["data"]["disabled_reason"].is_string());
    let list = deliveries(&app, &user, &hook, "").await;
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(deliveries(&app, &user, &watcher, "").await.len(), 1);

    // Re-enabling clears the reason; deliveries flow again.
    receiver.always("/gone", Answer::status(200));
    let patched = app
        .patch(
            &format!("{V1}/webhooks/{hook}"),
            &user,
            json!({"is_active": true}),
        )
        .await;
    patched.expect(200);
    assert_eq!(patched.body["data"]["is_active"], true);
    assert!(patched.body["data"]["disabled_reason"].is_null());
    project(&app, &user, "Back").await;
    receiver.wait_for("/gone", 2, WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn no_success_for_the_window_disables_with_a_reason() {
    let mut config = test_config();
    config.webhooks.disable_after = Duration::from_millis(300);
    config.webhooks.retry_schedule = vec![Duration::from_millis(400); 3];
    let app = TestApp::start_with(config).await;
    let user = app.signup("window@example.com", "Window").await;
    let receiver = Receiver::start().await;
    receiver.always("/failing", Answer::status(500));
    let (hook, _) = endpoint(
        &app,
        &user,
        &receiver.url("/failing"),
        json!(["projects.*"]),
    )
    .await;
    endpoint(&app, &user, &receiver.url("/watch"), json!(["webhooks.*"])).await;
    project(&app, &user, "Failing").await;
    let got = receiver.wait_for("/watch", 1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "webhooks.disabled");
    assert_eq!(body["data"]["id"], hook);
    assert!(body["data"]["disabled_reason"]
        .as_str()
        .is_some_and(|r| r.starts_with("No delivery succeeded since")));
    // The disabling is an event like any other, by the system.
    let actor: String = sqlx::query_scalar(
        "SELECT metadata ->> 'actor_type' FROM events
          WHERE aggregate_id = $1 AND event_type = 'WebhookDisabled'",
    )
    .bind(&hook)
    .fetch_one(app.pool())
    .await
    .expect("disabled event");
    assert_eq!(actor, "system");
    // Its queued delivery stopped.
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.first()
            .is_some_and(|d| d["status"] == "failed" || d["status"] == "dead")
    })
    .await;
    assert_ne!(list[0]["status"], "retrying");
    app.stop().await;
}

#[tokio::test]
async fn replay_delivers_stored_events_again_back_to_the_first() {
    let (app, user, receiver) = setup().await;
    let (live, _) = endpoint(&app, &user, &receiver.url("/live"), json!(["projects.*"])).await;
    let first = project(&app, &user, "Before the endpoint").await;
    app.patch(
        &format!("{V1}/projects/{first}"),
        &user,
        json!({"name": "Renamed"}),
    )
    .await
    .expect(200);
    receiver.wait_for("/live", 2, WAIT).await;
    // An endpoint created afterwards gets the history by replay.
    let (late, _) = endpoint(&app, &user, &receiver.url("/late"), json!(["projects.*"])).await;
    let replay = app
        .post(
            &format!("{V1}/webhooks/{late}/replay"),
            &user,
            json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    replay.expect(202);
    assert_eq!(replay.body["data"]["queued"], 2);
    let got = receiver.wait_for("/late", 2, WAIT).await;
    let live_got = receiver.received("/live");
    let mut late_ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    let mut live_ids: Vec<&str> = live_got.iter().map(|r| r.header("webhook-id")).collect();
    late_ids.sort_unstable();
    live_ids.sort_unstable();
    assert_eq!(late_ids, live_ids, "the same events, the same ids");
    for request in &got {
        let twin = live_got
            .iter()
            .find(|r| r.header("webhook-id") == request.header("webhook-id"))
            .expect("twin");
        assert_eq!(twin.body, request.body, "the same body");
    }
    // Replaying to the live endpoint re-sends its delivered events (same rows).
    let replay = app
        .post(
            &format!("{V1}/webhooks/{live}/replay"),
            &user,
            json!({"since": "2000-01-01T00:00:00Z", "event_types": ["projects.updated"]}),
        )
        .await;
    replay.expect(202);
    assert_eq!(replay.body["data"]["queued"], 1);
    let got = receiver.wait_for("/live", 3, WAIT).await;
    assert_eq!(got[2].header("x-pulsar-event"), "projects.updated");
    assert_eq!(got[2].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(
        deliveries(&app, &user, &live, "").await.len(),
        2,
        "no second row"
    );
    // Bad input.
    app.post(
        &format!("{V1}/webhooks/{live}/replay"),
        &user,
        json!({"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        &format!("{V1}/webhooks/{live}/replay"),
        &user,
        json!({"since": "2020-01-01T00:00:00Z", "event_types": ["nope.nope"]}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        &format!("{V1}/webhooks/{live}/replay"),
        &user,
        json!({"since": "yesterday"}),
    )
    .await
    .expect(422);
    app.post(
        &format!("{V1}/webhooks/{live}/replay"),
        &user,
        json!({"since": "2020-01-01T00:00:00Z", "extra": 1}),
    )
    .await
    .expect(422);
    app.stop().await;
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_until_the_grace_period_ends() {
    let (app, user, receiver) = setup().await;
    let (hook, old) = endpoint(&app, &user, &receiver.url("/rot"), json!(["projects.*"])).await;
    let rotated = app
        .post(
            &format!("{V1}/webhooks/{hook}/rotate-secret"),
            &user,
            json!({"grace_period_hours": 1}),
        )
        .await;
    rotated.expect(200);
    let new = rotated.body["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    assert_ne!(new, old);
    project(&app, &user, "Both").await;
    let got = receiver.wait_for("/rot", 1, WAIT).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2);
    assert_eq!(
        got[0].header("x-pulsar-signature").matches("v1=").count(),
        2
    );
    verify_with_official_libraries(&got[0], &[&old, &new]);

    // A rotation without grace: only the newest secret signs from now on.
    let rotated = app
        .post(
            &format!("{V1}/webhooks/{hook}/rotate-secret"),
            &user,
            json!({"grace_period_hours": 0}),
        )
        .await;
    rotated.expect(200);
    let newest = rotated.body["data"]["secret"]
        .as_str()
        .expect("secret")
        .to_string();
    project(&app, &user, "One").await;
    let got = receiver.wait_for("/rot", 2, WAIT).await;
    assert_eq!(got[1].header("webhook-signature").split(' ').count(), 1);
    verify_with_official_libraries(&got[1], &[&newest]);
    let ts: i64 = got[1].header("webhook-timestamp").parse().expect("ts");
    let body = got[1].body.as_bytes();
    for stale in [&old, &new] {
        assert!(!pulsar_dispatcher::signature::verify_pulsar(
            got[1].header("x-pulsar-signature"),
            body,
            stale,
            ts,
            300
        ));
    }
    app.post(
        &format!("{V1}/webhooks/{hook}/rotate-secret"),
        &user,
        json!({"grace_period_hours": 1000}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.stop().await;
}

#[tokio::test]
async fn test_sends_a_real_delivery_and_reports_it() {
    let (app, user, receiver) = setup().await;
    let (hook, secret) = endpoint(&app, &user, &receiver.url("/test"), json!(["projects.*"])).await;
    let response = app
        .post(&format!("{V1}/webhooks/{hook}/test"), &user, json!({}))
        .await;
    response.expect(200);
    assert_eq!(response.body["success"], true);
    assert_eq!(response.body["status_code"], 200);
    assert_eq!(response.body["response_body"], "ok");
    assert!(response.body["response_time_ms"].is_number());
    let got = receiver.received("/test");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json()["type"], "webhooks.test");
    assert_eq!(got[0].json()["data"]["id"], hook);
    verify_with_official_libraries(&got[0], &[&secret]);

    receiver.always("/test", Answer::status(500));
    let response = app
        .post(&format!("{V1}/webhooks/{hook}/test"), &user, json!({}))
        .await;
    response.expect(200);
    assert_eq!(response.body["success"], false);
    assert_eq!(response.body["status_code"], 500);
    assert!(response.body["error"].is_string());
    // Not a delivery.
    assert!(deliveries(&app, &user, &hook, "").await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn endpoint_input_is_validated_and_scoped() {
    let (app, user, receiver) = setup().await;
    let url = receiver.url("/x");
    for (body, field) in [
        (json!({"url": url, "events": []}), "events"),
        (json!({"url": url, "events": ["nope.created"]}), "events"),
        (
            json!({"url": "ftp://example.com/x", "events": ["*"]}),
            "url",
        ),
        (json!({"url": "not a url", "events": ["*"]}), "url"),
        (
            json!({"url": url, "events": ["*"], "rate_limit": 0}),
            "rate_limit",
        ),
        (
            json!({"url": url, "events": ["*"], "secret": "whsec_c2hvcnQ="}),
            "secret",
        ),
    ] {
        let response = app
            .post(&format!("{V1}/webhooks"), &user, body.clone())
            .await;
        response.expect_error(422, "validation_failed");
        let errors = response.body["errors"].as_object().expect("errors");
        assert!(
            errors
                .keys()
                .any(|k| k == field || k.starts_with(&format!("{field}."))),
            "{body}: {}",
            response.text
        );
    }
    app.post(
        &format!("{V1}/webhooks"),
        &user,
        json!({"url": url, "events": ["*"], "colour": "red"}),
    )
    .await
    .expect(422);
    // A secret of one's own is accepted and signs.
    let own = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let created = app
        .post(
            &format!("{V1}/webhooks"),
            &user,
            json!({"url": url, "events": ["*"], "secret": own, "rate_limit": 5, "description": "mine"}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.body["data"]["secret"], own);
    assert_eq!(created.body["data"]["rate_limit"], 5);
    let hook = created.body["data"]["id"].as_str().expect("id").to_string();
    let got = app.get(&format!("{V1}/webhooks/{hook}"), &user).await;
    assert!(got.body["data"].get("secret").is_none());
    // Another workspace sees nothing of it.
    let other = app.signup("intruder@example.com", "Intruder").await;
    for (method, path) in [
        ("GET", format!("{V1}/webhooks/{hook}")),
        ("DELETE", format!("{V1}/webhooks/{hook}")),
        ("GET", format!("{V1}/webhooks/{hook}/deliveries")),
        ("POST", format!("{V1}/webhooks/{hook}/test")),
        ("POST", format!("{V1}/webhooks/{hook}/rotate-secret")),
    ] {
        app.call(method, &path, Some(&other.token), None, &[])
            .await
            .expect_error(404, "not_found");
    }
    let others = app.get(&format!("{V1}/webhooks"), &other).await;
    assert_eq!(others.body["meta"]["total"], 0);
    app.get(&format!("{V1}/webhooks/wh_nope"), &user)
        .await
        .expect_error(404, "not_found");
    // Patch and delete.
    let patched = app
        .patch(
            &format!("{V1}/webhooks/{hook}"),
            &user,
            json!({"events": ["projects.created"], "rate_limit": null, "description": null}),
        )
        .await;
    patched.expect(200);
    assert!(patched.body["data"]["rate_limit"].is_null());
    assert_eq!(patched.body["data"]["events"], json!(["projects.created"]));
    app.patch(
        &format!("{V1}/webhooks/{hook}"),
        &user,
        json!({"url": "http://10.0.0.1/x"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.delete(&format!("{V1}/webhooks/{hook}"), &user)
        .await
        .expect(204);
    app.get(&format!("{V1}/webhooks/{hook}"), &user)
        .await
        .expect_error(404, "not_found");
    let secrets: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_secrets WHERE endpoint_id = $1")
            .bind(&hook)
            .fetch_one(app.pool())
            .await
            .expect("count");
    assert_eq!(secrets, 0, "a deleted endpoint's secrets are erased");
    app.stop().await;
}

#[tokio::test]
async fn private_addresses_are_refused_unless_the_operator_allows_them() {
    let mut config = test_config();
    config.webhooks = DispatcherConfig::default();
    let app = TestApp::start_with(config).await;
    let user = app.signup("ssrf@example.com", "Ssrf").await;
    for url in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:7f00:1]/hook",
        "https://localhost/hook",
        "https://192.168.1.10/hook",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "http://example.com/hook",
    ] {
        let response = app
            .post(
                &format!("{V1}/webhooks"),
                &user,
                json!({"url": url, "events": ["*"]}),
            )
            .await;
        response.expect_error(422, "validation_failed");
        assert!(response.body["errors"]["url"].is_array(), "{url}");
    }
    app.post(
        &format!("{V1}/webhooks"),
        &user,
        json!({"url": "https://hooks.example.com/pulsar", "events": ["*"]}),
    )
    .await
    .expect(201);
    app.stop().await;

    // Allowed by configuration, loopback works (the other tests deliver to it).
    let (app, user, receiver) = setup().await;
    let (_, _) = endpoint(
        &app,
        &user,
        &receiver.url("/allowed"),
        json!(["projects.*"]),
    )
    .await;
    project(&app, &user, "Allowed").await;
    receiver.wait_for("/allowed", 1, WAIT).await;
    app.stop().await;
}

#[tokio::test]
async fn rate_limit_delays_deliveries_without_failing_them() {
    let (app, user, receiver) = setup().await;
    let created = app
        .post(
            &format!("{V1}/webhooks"),
            &user,
            json!({"url": receiver.url("/slow"), "events": ["contacts.created"], "rate_limit": 5}),
        )
        .await;
    created.expect(201);
    let hook = created.body["data"]["id"].as_str().expect("id").to_string();
    for n in 0..10 {
        app.post(
            &format!("{V1}/contacts"),
            &user,
            json!({"name": format!("C{n}")}),
        )
        .await
        .expect(201);
    }
    let got = receiver.wait_for("/slow", 10, WAIT).await;
    let span = got[9].at - got[0].at;
    // 5 per second: the tenth goes out no sooner than ~1.8 s after the first.
    assert!(
        span >= Duration::from_millis(1500),
        "10 deliveries in {span:?}"
    );
    let list = wait_deliveries(&app, &user, &hook, |l| {
        l.len() == 10 && l.iter().all(|d| d["status"] == "success")
    })
    .await;
    assert!(list.iter().all(|d| d["attempt"] == 1), "none failed");
    app.stop().await;
}

#[tokio::test]
async fn two_dispatchers_on_one_database_never_send_the_same_attempt_twice() {
    let (app, user, receiver) = setup().await;
    let second = app.another_process(ProcessRole::Dispatcher).await;
    let third = app.another_process(ProcessRole::Dispatcher).await;
    let (hook, _) = endpoint(
        &app,
        &user,
        &receiver.url("/many"),
        json!(["contacts.created"]),
    )
    .await;
    let tasks = create_contacts(&app, &user, 120);
    for task in tasks {
        task.await.expect("create");
    }
    let got = receiver.wait_for("/many", 120, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = receiver.received("/many");
    assert_eq!(got_after.len(), 120, "one request per delivery, never two");
    let mut ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 120);
    let (rows, attempts): (i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT d.id), count(a.*) FROM webhook_deliveries d
           LEFT JOIN webhook_attempts a ON a.delivery_id = d.id WHERE d.endpoint_id = $1",
    )
    .bind(&hook)
    .fetch_one(app.pool())
    .await
    .expect("count");
    assert_eq!((rows, attempts), (120, 120));
    second.stop().await;
    third.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_dispatcher_killed_mid_load_neither_loses_nor_duplicates_a_delivery() {
    // The API and projections in this process; the dispatcher is the real binary.
    let app = TestApp::start_as(test_config(), ProcessRole::Projector).await;
    let user = app.signup("crash@example.com", "Crash").await;
    let receiver = Receiver::start().await;
    receiver.always(
        "/crash",
        Answer {
            delay: Duration::from_millis(20),
            ..Answer::status(200)
        },
    );
    let (hook, _) = endpoint(
        &app,
        &user,
        &receiver.url("/crash"),
        json!(["contacts.created"]),
    )
    .await;
    let data_dir = std::env::temp_dir().join(format!("pulsar-crash-{}", std::process::id()));
    let data = data_dir.to_string_lossy().to_string();
    let key = "00".repeat(32);
    let envs = [
        ("DATABASE_URL", app.db.url.as_str()),
        ("PULSAR_DATA_DIR", data.as_str()),
        ("PULSAR_SECRET_KEY", key.as_str()),
        ("PULSAR_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8"),
        ("PULSAR_WEBHOOK_ALLOW_HTTP", "true"),
        ("PULSAR_WEBHOOK_RETRY_SCHEDULE", "200ms,200ms,200ms"),
        ("PULSAR_WEBHOOK_TIMEOUT_MS", "2000"),
        ("PULSAR_WEBHOOK_CONCURRENCY", "4"),
    ];
    let owned: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let spawn = move || {
        let owned = owned.clone();
        tokio::task::spawn_blocking(move || {
            let envs: Vec<(&str, &str)> = owned
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            crate::binary::Server::spawn_role("dispatcher", &envs, None)
        })
    };
    let dispatcher = spawn().await.expect("spawn dispatcher");

    const N: usize = 150;
    let tasks = create_contacts(&app, &user, N);
    // Mid-load: some delivered, most not.
    receiver
        .wait_for("/crash", 20, Duration::from_secs(60))
        .await;
    tokio::task::spawn_blocking(move || dispatcher.kill())
        .await
        .expect("kill");
    let at_kill = receiver.received("/crash").len();
    assert!(
        at_kill < N,
        "the kill came too late to test anything ({at_kill})"
    );
    for task in tasks {
        task.await.expect("create");
    }
    let restarted = spawn().await.expect("respawn dispatcher");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1 AND status = 'success'",
        )
        .bind(&hook)
        .fetch_one(app.pool())
        .await
        .expect("count");
        if done as usize == N {
            break;
        }
        assert!(Instant::now() < deadline, "only {done} of {N} delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (rows, distinct): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT event_id) FROM webhook_deliveries WHERE endpoint_id = $1",
    )
    .bind(&hook)
    .fetch_one(app.pool())
    .await
    .expect("count");
    assert_eq!(
        (rows, distinct),
        (N as i64, N as i64),
        "exactly one delivery per event"
    );
    let mut ids: Vec<String> = receiver
        .received("/crash")
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N, "every event arrived");
    tokio::task::spawn_blocking(move || restarted.terminate())
        .await
        .expect("stop");
    let _ = std::fs::remove_dir_all(&data_dir);
    app.stop().await;
}
