//! Sign-up, login, sessions, workspaces and members, through the real router.

use pulsar_tests::TestApp;
use serde_json::{json, Value};

#[tokio::test]
async fn signup_login_session_logout() {
    let app = TestApp::start().await;
    let response = app
        .call(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": " Ada@Example.com ", "password": "correct horse battery", "name": "Ada", "workspace_name": "Analytical Engines"})),
            &[],
        )
        .await;
    response.expect(201);
    let body = &response.body;
    assert!(body["token"]
        .as_str()
        .is_some_and(|t| t.starts_with("pst_")));
    assert_eq!(body["principal"]["type"], "user");
    assert_eq!(body["principal"]["email"], "ada@example.com");
    assert_eq!(body["primaryWorkspace"]["name"], "Analytical Engines");
    assert_eq!(body["primaryWorkspace"]["slug"], "analytical-engines");
    assert_eq!(body["primaryWorkspace"]["role"], "owner");
    assert_eq!(body["scopes"], json!(["*"]));

    // The same email cannot sign up twice, whatever its case.
    let again = app
        .call(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": "ADA@example.com", "password": "another password", "workspace_name": "Other"})),
            &[],
        )
        .await;
    again.expect_error(422, "validation_failed");
    assert!(again.body["errors"]["email"].is_array());

    // Wrong password and unknown email look the same.
    let wrong = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": "wrong password!"})),
            &[],
        )
        .await;
    wrong.expect_error(401, "unauthorized");
    let unknown = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "nobody@example.com", "password": "wrong password!"})),
            &[],
        )
        .await;
    unknown.expect_error(401, "unauthorized");
    assert_eq!(wrong.body["message"], unknown.body["message"]);

    // A stale token sent along (say, by a client's default headers) does not stop a login.
    let login = app
        .call(
            "POST",
            "/api/v1/auth/login",
            Some("pst_stale"),
            Some(json!({"email": "ada@example.com", "password": "correct horse battery"})),
            &[],
        )
        .await;
    login.expect(200);
    let token = login.body["token"].as_str().expect("token").to_string();
    assert_ne!(token, body["token"].as_str().expect("token"));
    let session = app
        .call("GET", "/api/v1/auth/session", Some(&token), None, &[])
        .await;
    session.expect(200);
    assert_eq!(session.body["principal"]["id"], body["principal"]["id"]);
    assert_eq!(
        session.body["primaryWorkspace"]["id"],
        body["primaryWorkspace"]["id"]
    );

    // Sliding expiry: a session near its end is extended to an hour when used.
    sqlx::query("UPDATE sessions SET expires_at = now() + interval '5 minutes'")
        .execute(app.pool())
        .await
        .expect("age sessions");
    let session = app
        .call("GET", "/api/v1/auth/session", Some(&token), None, &[])
        .await;
    let expires: chrono::DateTime<chrono::Utc> = session.body["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("time");
    assert!(
        expires > chrono::Utc::now() + chrono::Duration::minutes(55),
        "{expires}"
    );
    // Expired sessions are dead.
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(app.pool())
        .await
        .expect("expire sessions");
    app.call("GET", "/api/v1/auth/session", Some(&token), None, &[])
        .await
        .expect_error(401, "unauthorized");

    // Logout kills the token at once.
    let login = app
        .call(
            "POST",
            "/api/v1/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": "correct horse battery"})),
            &[],
        )
        .await;
    let token = login.body["token"].as_str().expect("token").to_string();
    app.call("POST", "/api/v1/auth/logout", Some(&token), None, &[])
        .await
        .expect(204);
    app.call("GET", "/api/v1/auth/session", Some(&token), None, &[])
        .await
        .expect_error(401, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn closed_signup_is_refused() {
    let mut config = pulsar_tests::test_config();
    config.allow_signup = false;
    let app = TestApp::start_with(config).await;
    app.call(
        "POST",
        "/api/v1/auth/signup",
        None,
        Some(
            json!({"email": "a@example.com", "password": "long enough pw", "workspace_name": "W"}),
        ),
        &[],
    )
    .await
    .expect_error(403, "access_denied");
    app.stop().await;
}

#[tokio::test]
async fn events_carry_metadata_and_no_secrets() {
    let app = TestApp::start().await;
    let response = app
        .call(
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(json!({"email": "meta@example.com", "password": "a very secret passphrase", "workspace_name": "Meta"})),
            &[("x-request-id", "req-meta-1"), ("user-agent", "pulsar-tests/1")],
        )
        .await;
    response.expect(201);
    let user_id = response.body["principal"]["id"].as_str().expect("id");
    let token = response.body["token"].as_str().expect("token");
    let rows: Vec<(String, Value, Value)> =
        sqlx::query_as("SELECT event_type, payload, metadata FROM events ORDER BY global_position")
            .fetch_all(app.pool())
            .await
            .expect("events");
    let types: Vec<&str> = rows.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types, ["UserRegistered", "WorkspaceCreated", "MemberAdded"]);
    let password_hash: String = sqlx::query_scalar("SELECT password_hash FROM user_credentials")
        .fetch_one(app.pool())
        .await
        .expect("hash");
    for (_, payload, metadata) in &rows {
        assert_eq!(metadata["actor_type"], "user");
        assert_eq!(metadata["actor_id"], user_id);
        assert_eq!(metadata["request_id"], "req-meta-1");
        assert_eq!(metadata["client_ip"], "127.0.0.1");
        assert_eq!(metadata["user_agent"], "pulsar-tests/1");
        let text = format!("{payload}{metadata}");
        for secret in ["a very secret passphrase", password_hash.as_str(), token] {
            assert!(
                !text.contains(secret),
                "a secret leaked into an event: {text}"
            );
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn workspaces_crud_read_your_writes() {
    let app = TestApp::start().await;
    let user = app.signup("owner@example.com", "Home").await;
    // Create, then immediately list and search: the write is visible at once.
    for i in 0..10 {
        let name = format!("Project Nebula {i}");
        let created = app
            .post(
                "/api/v1/workspaces",
                &user,
                json!({"name": name, "slug": format!("nebula-{i}"), "tier": "pro"}),
            )
            .await;
        created.expect(201);
        assert_eq!(created.body["message"], "Workspace created successfully.");
        let id = created.body["data"]["id"].as_str().expect("id").to_string();
        assert_eq!(created.body["data"]["role"], "owner");
        assert_eq!(
            created.body["data"]["created_by"],
            json!({"type": "user", "id": user.user_id})
        );
        let list = app
            .get("/api/v1/workspaces?sort=-created_at&per_page=1", &user)
            .await;
        assert_eq!(list.body["data"][0]["id"], id.as_str());
        let search = app
            .get(&format!("/api/v1/workspaces?search=nebula-{i}"), &user)
            .await;
        assert_eq!(search.body["meta"]["total"], 1, "{}", search.text);
        assert_eq!(search.body["data"][0]["id"], id.as_str());
    }
    // Slugs are unique; a derived one gets a suffix.
    app.post(
        "/api/v1/workspaces",
        &user,
        json!({"name": "X", "slug": "nebula-1"}),
    )
    .await
    .expect_error(422, "validation_failed");
    let derived = app
        .post("/api/v1/workspaces", &user, json!({"name": "Home"}))
        .await;
    derived.expect(201);
    assert!(derived.body["data"]["slug"]
        .as_str()
        .is_some_and(|s| s.starts_with("home-")));
    // Bad input is 422 per field and leaves no event.
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    let bad = app
        .post(
            "/api/v1/workspaces",
            &user,
            json!({"name": "", "slug": "Not A Slug", "tier": "platinum"}),
        )
        .await;
    bad.expect_error(422, "validation_failed");
    assert!(bad.body["errors"]["tier"].is_array(), "{}", bad.text);
    let bad = app
        .post(
            "/api/v1/workspaces",
            &user,
            json!({"name": "", "slug": "Not A Slug"}),
        )
        .await;
    assert!(
        bad.body["errors"]["name"].is_array() && bad.body["errors"]["slug"].is_array(),
        "{}",
        bad.text
    );
    let bad = app
        .post(
            "/api/v1/workspaces",
            &user,
            json!({"name": "x".repeat(101)}),
        )
        .await;
    bad.expect_error(422, "validation_failed");
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(before, after);

    // Get, patch, delete.
    let ws = &user.workspace_id;
    let got = app.get(&format!("/api/v1/workspaces/{ws}"), &user).await;
    got.expect(200);
    assert_eq!(
        got.body["data"]["settings"],
        json!({"timezone": "UTC", "locale": "en"})
    );
    let patched = app
        .patch(&format!("/api/v1/workspaces/{ws}"), &user, json!({"name": "Home Base", "settings": {"timezone": "Europe/Berlin", "locale": "de-DE"}}))
        .await;
    patched.expect(200);
    assert_eq!(patched.body["data"]["name"], "Home Base");
    assert_eq!(
        patched.body["data"]["settings"],
        json!({"timezone": "Europe/Berlin", "locale": "de-DE"})
    );
    let bad = app
        .patch(
            &format!("/api/v1/workspaces/{ws}"),
            &user,
            json!({"settings": {"timezone": "Mars/Olympus Mons"}}),
        )
        .await;
    bad.expect_error(422, "validation_failed");
    assert!(
        bad.body["errors"]["settings.timezone"].is_array(),
        "{}",
        bad.text
    );
    let last = derived.body["data"]["id"].as_str().expect("id");
    app.delete(&format!("/api/v1/workspaces/{last}"), &user)
        .await
        .expect(204);
    app.get(&format!("/api/v1/workspaces/{last}"), &user)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("/api/v1/workspaces/{last}"), &user)
        .await
        .expect_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn members_roles_and_tenant_isolation() {
    let app = TestApp::start().await;
    let owner = app.signup("boss@example.com", "Boss Co").await;
    let other = app.signup("other@example.com", "Other Co").await;
    let viewer = app.signup("viewer@example.com", "Viewer Home").await;
    let ws = owner.workspace_id.clone();

    // Another tenant's workspace does not exist for you: 404 everywhere.
    for (method, path, body) in [
        ("GET", format!("/api/v1/workspaces/{ws}"), None),
        (
            "PATCH",
            format!("/api/v1/workspaces/{ws}"),
            Some(json!({"name": "pwned"})),
        ),
        ("DELETE", format!("/api/v1/workspaces/{ws}"), None),
        ("GET", format!("/api/v1/workspaces/{ws}/members"), None),
        (
            "POST",
            format!("/api/v1/workspaces/{ws}/members"),
            Some(json!({"email": "other@example.com", "role": "owner"})),
        ),
        (
            "PATCH",
            format!("/api/v1/workspaces/{ws}/members/{}", owner.user_id),
            Some(json!({"role": "viewer"})),
        ),
        (
            "DELETE",
            format!("/api/v1/workspaces/{ws}/members/{}", owner.user_id),
            None,
        ),
    ] {
        app.call(method, &path, Some(&other.token), body, &[])
            .await
            .expect_error(404, "not_found");
    }
    // Naming it as the acting workspace (header, alias, or query) is refused.
    for (headers, query) in [
        (vec![("x-workspace-id", ws.as_str())], String::new()),
        (vec![("x-account-id", ws.as_str())], String::new()),
        (vec![], format!("?workspaceId={ws}")),
    ] {
        let denied = app
            .call(
                "GET",
                &format!("/api/v1/api-keys{query}"),
                Some(&other.token),
                None,
                &headers,
            )
            .await;
        denied.expect_error(403, "access_denied");
    }
    let listed = app.get("/api/v1/workspaces", &other).await;
    assert_eq!(listed.body["meta"]["total"], 1);

    // Add a viewer.
    let added = app
        .post(
            &format!("/api/v1/workspaces/{ws}/members"),
            &owner,
            json!({"email": "Viewer@Example.com", "role": "viewer"}),
        )
        .await;
    added.expect(201);
    assert_eq!(added.body["data"]["role"], "viewer");
    assert_eq!(added.body["data"]["email"], "viewer@example.com");
    app.post(
        &format!("/api/v1/workspaces/{ws}/members"),
        &owner,
        json!({"email": "viewer@example.com", "role": "admin"}),
    )
    .await
    .expect_error(409, "conflict");
    app.post(
        &format!("/api/v1/workspaces/{ws}/members"),
        &owner,
        json!({"email": "ghost@example.com", "role": "admin"}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.post(
        &format!("/api/v1/workspaces/{ws}/members"),
        &owner,
        json!({"email": "other@example.com", "role": "emperor"}),
    )
    .await
    .expect_error(422, "validation_failed");
    let members = app
        .get(
            &format!("/api/v1/workspaces/{ws}/members?sort=email&fields=email,role"),
            &owner,
        )
        .await;
    assert_eq!(
        members.body["data"],
        json!([{"email": "boss@example.com", "role": "owner"}, {"email": "viewer@example.com", "role": "viewer"}])
    );

    // The viewer reads but cannot write, and is told which scope is missing.
    app.get(&format!("/api/v1/workspaces/{ws}"), &viewer)
        .await
        .expect(200);
    let denied = app
        .patch(
            &format!("/api/v1/workspaces/{ws}"),
            &viewer,
            json!({"name": "mine"}),
        )
        .await;
    denied.expect_error(403, "access_denied");
    assert!(denied.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("workspaces:write")));
    // The viewer's session acts in the viewer's own primary workspace by default, and
    // in the shared one when it names it.
    let session = app
        .call(
            "GET",
            "/api/v1/workspaces?fields=id,role",
            Some(&viewer.token),
            None,
            &[],
        )
        .await;
    assert_eq!(session.body["meta"]["total"], 2);

    // Promote to admin; admins cannot touch owners.
    app.patch(
        &format!("/api/v1/workspaces/{ws}/members/{}", viewer.user_id),
        &owner,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("/api/v1/workspaces/{ws}/members/{}", owner.user_id),
        &viewer,
        json!({"role": "member"}),
    )
    .await
    .expect_error(403, "access_denied");
    app.delete(&format!("/api/v1/workspaces/{ws}"), &viewer)
        .await
        .expect_error(403, "access_denied");
    // The last owner stays.
    app.delete(
        &format!("/api/v1/workspaces/{ws}/members/{}", owner.user_id),
        &owner,
    )
    .await
    .expect_error(409, "conflict");
    // Remove the admin: their access ends at once.
    app.delete(
        &format!("/api/v1/workspaces/{ws}/members/{}", viewer.user_id),
        &owner,
    )
    .await
    .expect(204);
    app.get(&format!("/api/v1/workspaces/{ws}"), &viewer)
        .await
        .expect_error(404, "not_found");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_writes_to_one_aggregate_retry_or_conflict_cleanly() {
    let app = std::sync::Arc::new(TestApp::start().await);
    let user = app.signup("race@example.com", "Race").await;
    let path = format!("/api/v1/workspaces/{}", user.workspace_id);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let app = app.clone();
            let user = user.clone();
            let path = path.clone();
            tokio::spawn(async move {
                app.patch(&path, &user, json!({"name": format!("Race {i}")}))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let response = task.await.expect("task");
        match response.status {
            200 => ok += 1,
            409 => {
                response.expect_error(409, "conflict");
            }
            other => panic!("unexpected {other}: {}", response.text),
        }
    }
    assert!(ok >= 1);
    // Every 200 is exactly one event, and the stream has no gaps or duplicates.
    let sequences: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM events WHERE aggregate_type = 'Workspace' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&user.workspace_id)
    .fetch_all(app.pool())
    .await
    .expect("events");
    assert_eq!(sequences, (1..=(2 + ok) as i64).collect::<Vec<_>>());
    let conflicts = app
        .runtime
        .state
        .metrics
        .command_conflicts_total
        .load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{ok} of 12 succeeded, {conflicts} conflicts retried");
}

#[tokio::test]
async fn etags_and_if_match_guard_against_lost_updates() {
    let app = TestApp::start().await;
    let user = app.signup("etag@example.com", "ETag").await;
    let path = format!("/api/v1/workspaces/{}", user.workspace_id);
    let got = app.get(&path, &user).await;
    // Created + owner added: version 2.
    assert_eq!(got.header("etag"), Some("\"2\""));
    assert_eq!(got.body["data"]["version"], 2);
    let patch = |etag: &'static str, name: &'static str| {
        let app = &app;
        let token = user.token.clone();
        let path = path.clone();
        async move {
            app.call(
                "PATCH",
                &path,
                Some(&token),
                Some(json!({"name": name})),
                &[("if-match", etag)],
            )
            .await
        }
    };
    let first = patch("\"2\"", "First").await;
    first.expect(200);
    assert_eq!(first.header("etag"), Some("\"3\""));
    // A client still holding version 2 is refused, and nothing is written.
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    patch("\"2\"", "Lost update")
        .await
        .expect_error(412, "precondition_failed");
    patch("W/\"2\"", "Lost update")
        .await
        .expect_error(412, "precondition_failed");
    patch("garbage", "x").await.expect_error(400, "bad_request");
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(events_before, events_after);
    assert_eq!(app.get(&path, &user).await.body["data"]["name"], "First");
    patch("*", "Any").await.expect(200);
    // API keys follow the same rule.
    let key = app
        .post(
            "/api/v1/api-keys",
            &user,
            json!({"name": "k", "scopes": ["api-keys:read"]}),
        )
        .await;
    key.expect(201);
    assert_eq!(key.header("etag"), Some("\"1\""));
    let key_path = format!(
        "/api/v1/api-keys/{}",
        key.body["data"]["id"].as_str().expect("id")
    );
    app.call(
        "PATCH",
        &key_path,
        Some(&user.token),
        Some(json!({"name": "k2"})),
        &[("if-match", "\"1\"")],
    )
    .await
    .expect(200);
    app.call(
        "DELETE",
        &key_path,
        Some(&user.token),
        None,
        &[("if-match", "\"1\"")],
    )
    .await
    .expect_error(412, "precondition_failed");
    app.call(
        "DELETE",
        &key_path,
        Some(&user.token),
        None,
        &[("if-match", "\"2\"")],
    )
    .await
    .expect(204);
    // Deleting a workspace with a stale version is refused too.
    app.call(
        "DELETE",
        &path,
        Some(&user.token),
        None,
        &[("if-match", "\"3\"")],
    )
    .await
    .expect_error(412, "precondition_failed");
    app.call(
        "DELETE",
        &path,
        Some(&user.token),
        None,
        &[("if-match", "\"4\"")],
    )
    .await
    .expect(204);
    app.stop().await;
}
