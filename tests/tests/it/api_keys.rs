//! API keys and the policy chain (API.md section 1), through the real router.

use chrono::Duration;
use pulsar_tests::{TestApp, User};
use serde_json::{json, Value};

/// A created key: its id and the credential halves.
struct Key {
    id: String,
    full: String,
    api_key: String,
    api_secret: String,
    body: Value,
}

async fn create_key(app: &TestApp, user: &User, body: Value) -> Key {
    let response = app.post("/api/v1/api-keys", user, body).await;
    response.expect(201);
    let data = &response.body["data"];
    Key {
        id: data["id"].as_str().expect("id").to_string(),
        full: data["key"].as_str().expect("key").to_string(),
        api_key: data["apiKey"].as_str().expect("apiKey").to_string(),
        api_secret: data["apiSecret"].as_str().expect("apiSecret").to_string(),
        body: response.body.clone(),
    }
}

/// `GET path` with the key as a bearer token, plus extra headers.
async fn with_key(
    app: &TestApp,
    key: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> pulsar_tests::Response {
    app.call("GET", path, Some(key), None, headers).await
}

fn config_trusting_localhost() -> pulsar_api::Config {
    let mut config = pulsar_tests::test_config();
    config.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    config
}

#[tokio::test]
async fn create_shows_the_secret_once_and_lists_never() {
    let app = TestApp::start().await;
    let user = app.signup("keys@example.com", "Keys").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "CI deploy", "scopes": ["api-keys:read", "workspaces:read"]}),
    )
    .await;
    let data = &key.body["data"];
    assert_eq!(key.body["message"], "API key created successfully.");
    assert!(key.api_key.starts_with("psk_"));
    assert_eq!(key.full, format!("{}_{}", key.api_key, key.api_secret));
    assert!(
        key.api_secret.len() >= 32 && key.api_secret.bytes().all(|b| b.is_ascii_alphanumeric())
    );
    assert_eq!(data["prefix"], &key.full[..8]);
    assert_eq!(
        data["masked"],
        format!("{}…{}", &key.full[..8], &key.full[key.full.len() - 4..])
    );
    assert_eq!(data["status"], "active");
    assert_eq!(data["created_by"]["type"], "user");
    assert_eq!(data["created_by"]["id"], user.user_id.as_str());
    assert_eq!(data["created_by"]["name"], "Test User");

    // The key works at once (read-your-writes reaches the key table too).
    let me = with_key(
        &app,
        &key.full,
        &format!("/api/v1/api-keys/{}", key.id),
        &[],
    )
    .await;
    me.expect(200);
    for response in [
        me.clone(),
        app.get("/api/v1/api-keys", &user).await,
        app.get("/api/v1/api-keys?search=deploy", &user).await,
    ] {
        assert!(
            !response.text.contains(&key.api_secret),
            "secret leaked: {}",
            response.text
        );
        assert!(response.body.to_string().contains(&key.id));
    }
    let listed = app.get("/api/v1/api-keys?search=deploy", &user).await;
    assert_eq!(listed.body["meta"]["total"], 1);
    assert!(
        listed.body["data"][0].get("apiSecret").is_none()
            && listed.body["data"][0].get("key").is_none()
    );

    // Nothing secret in the log: not the secret, its hash, or the full key.
    let hash = hex_sha256(&key.api_secret);
    let events: Vec<String> =
        sqlx::query_scalar("SELECT payload::text || metadata::text FROM events")
            .fetch_all(app.pool())
            .await
            .expect("events");
    for event in &events {
        for secret in [&key.api_secret, &key.full, &hash] {
            assert!(
                !event.contains(secret.as_str()),
                "secret material in an event: {event}"
            );
        }
    }
    app.stop().await;
}

fn hex_sha256(secret: &str) -> String {
    pulsar_domain::keys::secret_hash(secret)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn three_credential_forms_resolve_to_one_principal() {
    let app = TestApp::start().await;
    let user = app.signup("forms@example.com", "Forms").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "forms", "scopes": ["api-keys:read"]}),
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", key.id);
    with_key(&app, &key.full, &path, &[]).await.expect(200);
    app.call(
        "GET",
        &path,
        None,
        None,
        &[
            ("x-api-key", &key.api_key),
            ("x-api-secret", &key.api_secret),
        ],
    )
    .await
    .expect(200);
    // Exchange the key for a session: it carries the key's scopes.
    let login = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"apiKey": key.api_key, "apiSecret": key.api_secret})),
            &[],
        )
        .await;
    login.expect(200);
    assert_eq!(login.body["principal"]["type"], "api_key");
    assert_eq!(login.body["principal"]["id"], key.id.as_str());
    assert_eq!(login.body["scopes"], json!(["api-keys:read"]));
    let token = login.body["token"].as_str().expect("token").to_string();
    app.call("GET", &path, Some(&token), None, &[])
        .await
        .expect(200);
    let session = app
        .call("GET", "/api/v1/auth/session", Some(&token), None, &[])
        .await;
    assert_eq!(session.body["principal"]["type"], "api_key");
    // The session has the key's scopes, not more.
    app.call("GET", "/api/v1/api-keys", Some(&token), None, &[])
        .await
        .expect(200);
    app.call(
        "POST",
        "/api/v1/api-keys",
        Some(&token),
        Some(json!({"name": "x", "scopes": ["api-keys:read"]})),
        &[],
    )
    .await
    .expect_error(403, "access_denied");
    // Wrong secret in the login: 401 with the same message as a wrong password.
    let wrong = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"apiKey": key.api_key, "apiSecret": "x".repeat(42)})),
            &[],
        )
        .await;
    wrong.expect_error(401, "unauthorized");
    assert_eq!(wrong.body["message"], "The credentials are invalid.");
    // The session dies with the key.
    app.delete(&format!("/api/v1/api-keys/{}", key.id), &user)
        .await
        .expect(204);
    app.call("GET", &path, Some(&token), None, &[])
        .await
        .expect_error(401, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn each_policy_step_answers_with_its_status_and_code() {
    let app = TestApp::start_with(config_trusting_localhost()).await;
    let user = app.signup("policy@example.com", "Policy").await;
    let other = app.signup("stranger@example.com", "Elsewhere").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "policy", "scopes": ["api-keys:read"]}),
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", key.id);

    // 1. malformed: wrong shape, bad checksum, one half only.
    with_key(&app, "psk_nonsense", &path, &[])
        .await
        .expect_error(401, "unauthorized");
    let mut typo = key.full.clone().into_bytes();
    typo[25] = if typo[25] == b'a' { b'b' } else { b'a' };
    with_key(&app, &String::from_utf8(typo).expect("ascii"), &path, &[])
        .await
        .expect_error(401, "unauthorized");
    app.call("GET", &path, None, None, &[("x-api-key", &key.api_key)])
        .await
        .expect_error(401, "unauthorized");
    // 2. unknown key (well formed, never issued) and wrong secret.
    let unknown = pulsar_domain::keys::NewKey::generate().full();
    with_key(&app, &unknown, &path, &[])
        .await
        .expect_error(401, "unauthorized");
    let forged = pulsar_domain::keys::NewKey::generate();
    app.call(
        "GET",
        &path,
        None,
        None,
        &[
            ("x-api-key", &key.api_key),
            ("x-api-secret", &forged.api_secret),
        ],
    )
    .await
    .expect_error(401, "unauthorized");
    // 7. the route's scope, named in the message.
    let denied = with_key(&app, &key.full, "/api/v1/api-keys", &[]).await;
    denied.expect(200);
    let denied = app.call("DELETE", &path, Some(&key.full), None, &[]).await;
    denied.expect_error(403, "access_denied");
    assert!(denied.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("api-keys:delete")));
    // Another workspace: 403 by header, 404 for its resources.
    with_key(
        &app,
        &key.full,
        &path,
        &[("x-workspace-id", &other.workspace_id)],
    )
    .await
    .expect_error(403, "access_denied");
    let theirs = create_key(
        &app,
        &other,
        json!({"name": "theirs", "scopes": ["api-keys:read"]}),
    )
    .await;
    with_key(
        &app,
        &key.full,
        &format!("/api/v1/api-keys/{}", theirs.id),
        &[],
    )
    .await
    .expect_error(404, "not_found");
    app.get(&format!("/api/v1/api-keys/{}", theirs.id), &user)
        .await
        .expect_error(404, "not_found");

    // 3. too old for its max age.
    let aging = create_key(
        &app,
        &user,
        json!({"name": "aging", "scopes": ["api-keys:read"], "max_age_days": 1}),
    )
    .await;
    with_key(&app, &aging.full, &path, &[]).await.expect(200);
    // 2. expired by its own expiry.
    let expiring = create_key(
        &app,
        &user,
        json!({"name": "expiring", "scopes": ["api-keys:read"], "expires_at": (chrono::Utc::now() + Duration::hours(1)).to_rfc3339()}),
    )
    .await;
    with_key(&app, &expiring.full, &path, &[]).await.expect(200);
    app.runtime.state.clock.advance(Duration::hours(25));
    with_key(&app, &aging.full, &path, &[])
        .await
        .expect_error(401, "key_rotation_required");
    with_key(&app, &expiring.full, &path, &[])
        .await
        .expect_error(401, "unauthorized");
    with_key(&app, &key.full, &path, &[]).await.expect(200);

    // 2. revoked, effective at once.
    app.delete(&format!("/api/v1/api-keys/{}", key.id), &user)
        .await
        .expect(204);
    with_key(&app, &key.full, &path, &[])
        .await
        .expect_error(401, "unauthorized");
    let revoked = app.get(&path, &user).await;
    assert_eq!(revoked.body["data"]["status"], "revoked");
    app.delete(&path, &user)
        .await
        .expect_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn ip_allowlists_of_both_families() {
    let app = TestApp::start_with(config_trusting_localhost()).await;
    let user = app.signup("ips@example.com", "IPs").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "office", "scopes": ["api-keys:read"], "ip_allowlist": ["203.0.113.7", "198.51.100.0/24", "2001:db8:abcd::/48"]}),
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", key.id);
    for (ip, allowed) in [
        ("203.0.113.7", true),         // v4 exact
        ("203.0.113.8", false),        // v4 exact, neighbour
        ("198.51.100.200", true),      // v4 CIDR
        ("198.51.101.1", false),       // v4 CIDR, outside
        ("2001:db8:abcd:12::1", true), // v6 CIDR
        ("2001:db8:abce::1", false),   // v6 CIDR, outside
    ] {
        let response = with_key(&app, &key.full, &path, &[("x-forwarded-for", ip)]).await;
        if allowed {
            response.expect(200);
        } else {
            response.expect_error(403, "ip_not_allowed");
        }
    }
    // The socket peer (127.0.0.1) is what counts when no proxy forwards.
    with_key(&app, &key.full, &path, &[])
        .await
        .expect_error(403, "ip_not_allowed");
    // A session made from the key is held to the same list.
    let login = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"apiKey": key.api_key, "apiSecret": key.api_secret})),
            &[("x-forwarded-for", "8.8.8.8")],
        )
        .await;
    login.expect_error(403, "ip_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn an_empty_scope_list_is_denied_even_if_it_got_into_the_log() {
    let app = TestApp::start().await;
    let user = app.signup("empty@example.com", "Empty").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "legacy", "scopes": ["api-keys:read"]}),
    )
    .await;
    // The API refuses to create or patch one...
    app.post(
        "/api/v1/api-keys",
        &user,
        json!({"name": "none", "scopes": []}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.patch(
        &format!("/api/v1/api-keys/{}", key.id),
        &user,
        json!({"scopes": []}),
    )
    .await
    .expect_error(422, "validation_failed");
    // ...so append one the way an old version or a bug might have.
    let settings = json!({"ApiKeyUpdated": {"settings": {"name": "legacy", "scopes": [], "ip_allowlist": [],
        "expires_at": null, "max_age_days": null, "rate_limit_tier": null}, "changed": ["scopes"]}});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('ApiKey', $1, 2, 'ApiKeyUpdated', '1.0', $2, '{}')",
    )
    .bind(&key.id)
    .bind(&settings)
    .execute(app.pool())
    .await
    .expect("append");
    app.runtime.state.subscriptions.appended();
    let path = format!("/api/v1/api-keys/{}", key.id);
    let mut response = with_key(&app, &key.full, &path, &[]).await;
    for _ in 0..100 {
        if response.status == 403 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        response = with_key(&app, &key.full, &path, &[]).await;
    }
    response.expect_error(403, "access_denied");
    app.stop().await;
}

#[tokio::test]
async fn wildcard_scopes() {
    let app = TestApp::start().await;
    let user = app.signup("wild@example.com", "Wild").await;
    let all_keys = create_key(
        &app,
        &user,
        json!({"name": "keys admin", "scopes": ["api-keys:*"]}),
    )
    .await;
    let everything = create_key(&app, &user, json!({"name": "root", "scopes": ["*"]})).await;
    let reader = create_key(
        &app,
        &user,
        json!({"name": "reader", "scopes": ["workspaces:read"]}),
    )
    .await;
    let ws = format!("/api/v1/workspaces/{}", user.workspace_id);
    // resource:* covers read, write and delete of that resource only.
    let victim = create_key(
        &app,
        &user,
        json!({"name": "victim", "scopes": ["workspaces:read"]}),
    )
    .await;
    app.call(
        "DELETE",
        &format!("/api/v1/api-keys/{}", victim.id),
        Some(&all_keys.full),
        None,
        &[],
    )
    .await
    .expect(204);
    with_key(&app, &all_keys.full, &ws, &[])
        .await
        .expect_error(403, "access_denied");
    // * covers everything.
    with_key(&app, &everything.full, &ws, &[]).await.expect(200);
    with_key(&app, &everything.full, "/api/v1/api-keys", &[])
        .await
        .expect(200);
    // An exact scope covers exactly that.
    let got = with_key(&app, &reader.full, &ws, &[]).await;
    got.expect(200);
    assert_eq!(got.body["data"]["id"], user.workspace_id.as_str());
    assert_eq!(got.body["data"]["role"], json!(null));
    app.call(
        "PATCH",
        &ws,
        Some(&reader.full),
        Some(json!({"name": "x"})),
        &[],
    )
    .await
    .expect_error(403, "access_denied");
    // A key can mint keys only within its own scopes.
    let minted = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(&all_keys.full),
            Some(json!({"name": "m", "scopes": ["workspaces:read"]})),
            &[],
        )
        .await;
    minted.expect_error(422, "validation_failed");
    assert!(
        minted.body["errors"]["scopes.0"].is_array(),
        "{}",
        minted.text
    );
    let minted = app
        .call(
            "POST",
            "/api/v1/api-keys",
            Some(&all_keys.full),
            Some(json!({"name": "m", "scopes": ["api-keys:read"]})),
            &[],
        )
        .await;
    minted.expect(201);
    assert_eq!(
        minted.body["data"]["created_by"],
        json!({"type": "api_key", "id": all_keys.id, "name": "keys admin"})
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_422_with_field_messages() {
    let app = TestApp::start().await;
    let user = app.signup("bad@example.com", "Bad").await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    let cases: Vec<(Value, &str)> = vec![
        (json!({"scopes": ["projects:read"]}), "name"),
        (json!({"name": "x"}), "scopes"),
        (json!({"name": "x", "scopes": "projects:read"}), "scopes"),
        (
            json!({"name": "x", "scopes": ["projects:admin"]}),
            "scopes.0",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read", "nope"]}),
            "scopes.1",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "ip_allowlist": ["10.0.0.0/33"]}),
            "ip_allowlist.0",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "ip_allowlist": ["::1", "not-an-ip"]}),
            "ip_allowlist.1",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "expires_at": "2020-01-01T00:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "max_age_days": 0}),
            "max_age_days",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "max_age_days": -3}),
            "max_age_days",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "rate_limit_tier": "gold"}),
            "rate_limit_tier",
        ),
        (
            json!({"name": "x".repeat(101), "scopes": ["projects:read"]}),
            "name",
        ),
        (
            json!({"name": "x", "scopes": ["projects:read"], "secret": "mine"}),
            "secret",
        ),
    ];
    for (body, field) in cases {
        let response = app.post("/api/v1/api-keys", &user, body.clone()).await;
        response.expect_error(422, "validation_failed");
        assert!(
            response.body["errors"][field].is_array(),
            "{body} → {}",
            response.text
        );
    }
    let key = create_key(
        &app,
        &user,
        json!({"name": "k", "scopes": ["projects:read"]}),
    )
    .await;
    // The rotate body is optional, but one that is there must be JSON.
    let request = axum::http::Request::post(format!("/api/v1/api-keys/{}/rotate", key.id))
        .header("authorization", user.bearer())
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("grace_period_hours=5"))
        .expect("request");
    app.send(request)
        .await
        .expect_error(415, "unsupported_media_type");
    let request = axum::http::Request::post(format!("/api/v1/api-keys/{}/rotate", key.id))
        .header("authorization", user.bearer())
        .header("content-length", "20")
        .body(axum::body::Body::from("grace_period_hours=5"))
        .expect("request");
    app.send(request)
        .await
        .expect_error(415, "unsupported_media_type");
    for hours in [json!(-1), json!(169), json!("soon"), json!(1.5)] {
        let response = app
            .post(
                &format!("/api/v1/api-keys/{}/rotate", key.id),
                &user,
                json!({"grace_period_hours": hours}),
            )
            .await;
        response.expect_error(422, "validation_failed");
        assert!(
            response.body["errors"]["grace_period_hours"].is_array(),
            "{hours} → {}",
            response.text
        );
    }
    let response = app
        .patch(
            &format!("/api/v1/api-keys/{}", key.id),
            &user,
            json!({"expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    response.expect_error(422, "validation_failed");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(after, before + 1, "only the one valid key left an event");
    let secrets: i64 = sqlx::query_scalar("SELECT count(*) FROM api_key_secrets")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(secrets, 1, "refused keys leave no secret row behind");
    app.stop().await;
}

#[tokio::test]
async fn patch_changes_what_the_key_may_do_at_once() {
    let app = TestApp::start().await;
    let user = app.signup("patch@example.com", "Patch").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "p", "scopes": ["api-keys:read"], "max_age_days": 30}),
    )
    .await;
    let ws = format!("/api/v1/workspaces/{}", user.workspace_id);
    with_key(&app, &key.full, &ws, &[])
        .await
        .expect_error(403, "access_denied");
    let patched = app
        .patch(&format!("/api/v1/api-keys/{}", key.id), &user, json!({"name": "p2", "scopes": ["workspaces:read"], "max_age_days": null, "rate_limit_tier": "pro"}))
        .await;
    patched.expect(200);
    assert_eq!(patched.body["data"]["name"], "p2");
    assert_eq!(patched.body["data"]["max_age_days"], json!(null));
    assert_eq!(patched.body["data"]["rate_limit_tier"], "pro");
    with_key(&app, &key.full, &ws, &[]).await.expect(200);
    let limit = with_key(&app, &key.full, &ws, &[]).await;
    assert_eq!(
        limit.header("x-ratelimit-limit"),
        Some("650000"),
        "pro tier (5,000 + 30% burst, API.md) × the test scale of 100"
    );
    let remaining: u64 = limit
        .header("x-ratelimit-remaining")
        .and_then(|r| r.parse().ok())
        .expect("remaining");
    assert!(
        remaining < 650_000,
        "Remaining never exceeds Limit: {remaining}"
    );
    app.stop().await;
}

#[tokio::test]
async fn rotation_keeps_both_keys_during_the_grace_then_only_the_new_one() {
    let app = TestApp::start().await;
    let user = app.signup("rotate@example.com", "Rotate").await;
    let old = create_key(
        &app,
        &user,
        json!({"name": "svc", "scopes": ["api-keys:read"], "ip_allowlist": ["127.0.0.1"]}),
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", old.id);
    let rotated = app
        .post(
            &format!("{path}/rotate"),
            &user,
            json!({"grace_period_hours": 2}),
        )
        .await;
    rotated.expect(200);
    assert_eq!(rotated.body["message"], "API key rotated successfully.");
    let new_key = rotated.body["data"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let new_id = rotated.body["data"]["id"].as_str().expect("id").to_string();
    assert_ne!(new_id, old.id);
    assert_eq!(rotated.body["data"]["scopes"], json!(["api-keys:read"]));
    assert_eq!(rotated.body["data"]["ip_allowlist"], json!(["127.0.0.1"]));
    assert_eq!(rotated.body["data"]["rotated_from"], old.id.as_str());
    assert!(rotated.body["data"]["grace_period_ends_at"].is_string());
    let old_item = app.get(&path, &user).await;
    assert_eq!(old_item.body["data"]["status"], "rotating");
    assert_eq!(old_item.body["data"]["replaced_by"], new_id.as_str());
    // During the grace both work.
    with_key(&app, &old.full, &path, &[]).await.expect(200);
    with_key(&app, &new_key, &path, &[]).await.expect(200);
    // A key mid-rotation cannot be rotated again.
    app.post(&format!("{path}/rotate"), &user, json!({}))
        .await
        .expect_error(409, "conflict");
    // After it only the new one does, and the end is recorded by itself.
    app.runtime
        .state
        .clock
        .advance(Duration::hours(2) + Duration::seconds(1));
    with_key(&app, &old.full, &path, &[])
        .await
        .expect_error(401, "unauthorized");
    with_key(&app, &new_key, &path, &[]).await.expect(200);
    let mut history = app.get(&format!("{path}/history"), &user).await;
    // The sweeper runs every 100 ms; a loaded CI machine may take a few seconds.
    for _ in 0..500 {
        if history.text.contains("ApiKeyExpiredByRotation") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        history = app.get(&format!("{path}/history"), &user).await;
    }
    let types: Vec<&str> = history.body["data"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        ["ApiKeyCreated", "ApiKeyRotated", "ApiKeyExpiredByRotation"]
    );
    assert_eq!(
        history.body["data"][1]["metadata"]["actor_id"],
        user.user_id.as_str()
    );
    assert_eq!(history.body["data"][2]["metadata"]["actor_type"], "system");
    // The read model follows the log (the sweeper does not wait for it).
    let mut status = app.get(&path, &user).await.body["data"]["status"].clone();
    for _ in 0..250 {
        if status == "expired" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = app.get(&path, &user).await.body["data"]["status"].clone();
    }
    assert_eq!(status, "expired");

    // Grace 0: the old key stops at once. A body is optional.
    let quick = create_key(
        &app,
        &user,
        json!({"name": "quick", "scopes": ["api-keys:read"]}),
    )
    .await;
    let response = app
        .call(
            "POST",
            &format!("/api/v1/api-keys/{}/rotate", quick.id),
            Some(&user.token),
            None,
            &[],
        )
        .await;
    response.expect(200);
    let response = app
        .post(
            &format!(
                "/api/v1/api-keys/{}/rotate",
                response.body["data"]["id"].as_str().expect("id")
            ),
            &user,
            json!({"grace_period_hours": 0}),
        )
        .await;
    response.expect(200);
    app.stop().await;
}

#[tokio::test]
async fn rate_limits_by_tier_with_headers_and_recovery() {
    let mut config = pulsar_tests::test_config();
    config.rate_limit_scale = 1.0;
    let app = TestApp::start_with(config).await;
    let user = app.signup("limits@example.com", "Limits").await;
    let key = create_key(
        &app,
        &user,
        json!({"name": "limited", "scopes": ["api-keys:read"]}),
    )
    .await;
    let path = format!("/api/v1/api-keys/{}", key.id);
    // Free tier: 60 per minute, no burst on top. It refills one per second, so a slow
    // machine may get one extra per second elapsed; never fewer than 60.
    let started = std::time::Instant::now();
    let mut allowed = 0;
    let limited = loop {
        let response = with_key(&app, &key.full, &path, &[]).await;
        if response.status == 429 {
            break response;
        }
        response.expect(200);
        assert_eq!(response.header("x-ratelimit-limit"), Some("60"));
        let remaining: u32 = response
            .header("x-ratelimit-remaining")
            .and_then(|r| r.parse().ok())
            .expect("remaining");
        if allowed == 0 {
            assert_eq!(remaining, 59);
        }
        assert!(response
            .header("x-ratelimit-reset")
            .and_then(|r| r.parse::<i64>().ok())
            .is_some());
        allowed += 1;
        assert!(allowed <= 70, "the limit never applied");
    };
    let slack = started.elapsed().as_secs() as i64 + 1;
    assert!(
        (60..=60 + slack).contains(&allowed),
        "{allowed} requests passed in {:?}",
        started.elapsed()
    );
    limited.expect_error(429, "rate_limit_exceeded");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(limited.body["limit"], 60);
    assert_eq!(limited.body["remaining"], 0);
    assert_eq!(limited.body["retry_after"], 1);
    assert!(limited.body["reset_at"].is_string());
    // Another key of the same workspace has its own budget.
    let sibling = app.call("GET", &path, Some(&user.token), None, &[]).await;
    sibling.expect(200);
    // Recovered after the drip interval.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    with_key(&app, &key.full, &path, &[]).await.expect(200);
    // Usage was counted in memory and flushed in a batch.
    let mut last_used = Value::Null;
    for _ in 0..100 {
        last_used = app.get(&path, &user).await.body["data"]["last_used_at"].clone();
        if last_used.is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(last_used.is_string());
    let mut calls = 0i64;
    for _ in 0..100 {
        calls = sqlx::query_scalar("SELECT calls FROM api_key_usage WHERE key_id = $1")
            .bind(&key.id)
            .fetch_optional(app.pool())
            .await
            .expect("usage")
            .unwrap_or(0);
        if calls > allowed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        calls, 61,
        "60 allowed + 1 after recovery; the refused one is not a call"
    );
    app.stop().await;
}

#[tokio::test]
async fn closed_set_filters_refuse_unknown_values() {
    let app = TestApp::start().await;
    let user = app.signup("closed@example.com", "Closed").await;
    for path in [
        "/api/v1/api-keys?status=paused",
        "/api/v1/api-keys?rate_limit_tier=gold",
        "/api/v1/workspaces?tier=gold",
        "/api/v1/workspaces?role=emperor",
    ] {
        app.get(path, &user).await.expect_error(400, "bad_request");
    }
    for path in [
        "/api/v1/api-keys?status=active,revoked",
        "/api/v1/workspaces?tier=free",
    ] {
        app.get(path, &user).await.expect(200);
    }
    app.stop().await;
}
