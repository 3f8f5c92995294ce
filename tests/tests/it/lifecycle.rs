//! Authority follows the lifecycle on every node: each edge (a workspace deleted, a
//! member removed or demoted, a key revoked or expired under a live key session, a
//! user's last workspace deleted) is changed through one server process and checked on
//! a second one that shares only the database.

use std::time::{Duration, Instant};

use pulsar_tests::{Process, ProcessRole, Response, TestApp, User};
use serde_json::{json, Value};

const V1: &str = "/api/v1";

/// How long another process may take to follow a change (API.md: within a second); the
/// bound is generous for loaded CI machines, and the time taken is printed.
const FOLLOW_WITHIN: Duration = Duration::from_secs(5);

/// Polls `check` on process `node` until it holds; panics naming `what` if it never does.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            eprintln!("{what}: followed in {:?}", started.elapsed());
            return;
        }
        assert!(
            started.elapsed() < FOLLOW_WITHIN,
            "{what}: not followed within {FOLLOW_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Key {
    id: String,
    full: String,
    api_key: String,
    api_secret: String,
}

async fn create_key(app: &TestApp, user: &User, body: Value) -> Key {
    let response = app.post(&format!("{V1}/api-keys"), user, body).await;
    response.expect(201);
    let data = &response.body["data"];
    let text = |name: &str| data[name].as_str().expect(name).to_string();
    Key {
        id: text("id"),
        full: text("key"),
        api_key: text("apiKey"),
        api_secret: text("apiSecret"),
    }
}

/// A session made from a key, through `node` (which learns of a key created on
/// another node within a notification's latency, so it may take a moment).
async fn key_session(node: &Process, key: &Key) -> String {
    let login = || async {
        node.call(
            "POST",
            &format!("{V1}/auth/login"),
            None,
            Some(json!({"apiKey": key.api_key, "apiSecret": key.api_secret})),
            &[],
        )
        .await
    };
    eventually("the node knows the new key", || async {
        login().await.status == 200
    })
    .await;
    let response = login().await;
    response.expect(200);
    response.body["token"].as_str().expect("token").to_string()
}

async fn get(node: &Process, path: &str, token: &str) -> Response {
    node.call("GET", path, Some(token), None, &[]).await
}

#[tokio::test]
async fn deleting_a_workspace_ends_its_keys_their_sessions_and_its_members_access_everywhere() {
    let app = TestApp::start().await;
    let b = app.another_process(ProcessRole::Api).await;
    let owner = app.signup("owner@life.example", "Doomed").await;
    let member = app.signup("member@life.example", "Own").await;
    app.post(
        &format!("{V1}/workspaces/{}/members", owner.workspace_id),
        &owner,
        json!({"email": member.email, "role": "admin"}),
    )
    .await
    .expect(201);
    app.post(&format!("{V1}/projects"), &owner, json!({"name": "P"}))
        .await
        .expect(201);
    let key = create_key(&app, &owner, json!({"name": "all", "scopes": ["*"]})).await;
    // Everything works on B first.
    let key_token = key_session(&b, &key).await;
    get(&b, &format!("{V1}/projects"), &key.full)
        .await
        .expect(200);
    get(&b, &format!("{V1}/projects"), &key_token)
        .await
        .expect(200);
    let as_member = [("x-workspace-id", owner.workspace_id.as_str())];
    b.call(
        "GET",
        &format!("{V1}/projects"),
        Some(&member.token),
        None,
        &as_member,
    )
    .await
    .expect(200);

    app.delete(&format!("{V1}/workspaces/{}", owner.workspace_id), &owner)
        .await
        .expect(204);

    // At once on A (the delete waited for its key table).
    app.call("GET", &format!("{V1}/projects"), Some(&key.full), None, &[])
        .await
        .expect_error(401, "unauthorized");
    // And on B: the key, the session made from it, a fresh login, its key list and patch.
    let projects = format!("{V1}/projects");
    eventually("B refuses the deleted workspace's key", || async {
        get(&b, &projects, &key.full).await.status == 401
    })
    .await;
    get(&b, &projects, &key_token)
        .await
        .expect_error(401, "unauthorized");
    get(&b, &format!("{V1}/api-keys"), &key.full)
        .await
        .expect_error(401, "unauthorized");
    b.call(
        "PATCH",
        &format!("{V1}/api-keys/{}", key.id),
        Some(&key.full),
        Some(json!({"name": "still here?"})),
        &[],
    )
    .await
    .expect_error(401, "unauthorized");
    b.call(
        "POST",
        &format!("{V1}/auth/login"),
        None,
        Some(json!({"apiKey": key.api_key, "apiSecret": key.api_secret})),
        &[],
    )
    .await
    .expect_error(401, "unauthorized");
    // Its members (owner and admin) can no longer act in it, on B either.
    for user in [&owner, &member] {
        b.call("GET", &projects, Some(&user.token), None, &as_member)
            .await
            .expect_error(403, "access_denied");
        get(
            &b,
            &format!("{V1}/workspaces/{}", owner.workspace_id),
            &user.token,
        )
        .await
        .expect_error(404, "not_found");
    }
    // The member still has their own workspace.
    get(&b, &projects, &member.token).await.expect(200);
    b.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_removed_or_demoted_member_loses_that_power_on_every_node() {
    let app = TestApp::start().await;
    let b = app.another_process(ProcessRole::Api).await;
    let owner = app.signup("owner@members.example", "Team").await;
    let alice = app.signup("alice@members.example", "Alice's").await;
    let bob = app.signup("bob@members.example", "Bob's").await;
    for user in [&alice, &bob] {
        app.post(
            &format!("{V1}/workspaces/{}/members", owner.workspace_id),
            &owner,
            json!({"email": user.email, "role": "admin"}),
        )
        .await
        .expect(201);
    }
    let in_team = [("x-workspace-id", owner.workspace_id.as_str())];
    let create = |user: &User| {
        let token = user.token.clone();
        let b = &b;
        async move {
            b.call(
                "POST",
                &format!("{V1}/projects"),
                Some(&token),
                Some(json!({"name": "by an admin"})),
                &in_team,
            )
            .await
        }
    };
    create(&alice).await.expect(201);
    create(&bob).await.expect(201);

    // Alice is demoted to viewer on A: B refuses her writes, still lets her read.
    app.patch(
        &format!(
            "{V1}/workspaces/{}/members/{}",
            owner.workspace_id, alice.user_id
        ),
        &owner,
        json!({"role": "viewer"}),
    )
    .await
    .expect(200);
    eventually("B follows the demotion", || async {
        create(&alice).await.status == 403
    })
    .await;
    create(&alice).await.expect_error(403, "access_denied");
    b.call(
        "GET",
        &format!("{V1}/projects"),
        Some(&alice.token),
        None,
        &in_team,
    )
    .await
    .expect(200);

    // Bob is removed on A: B refuses him in that workspace altogether.
    app.delete(
        &format!(
            "{V1}/workspaces/{}/members/{}",
            owner.workspace_id, bob.user_id
        ),
        &owner,
    )
    .await
    .expect(204);
    eventually("B follows the removal", || async {
        b.call(
            "GET",
            &format!("{V1}/projects"),
            Some(&bob.token),
            None,
            &in_team,
        )
        .await
        .status
            == 403
    })
    .await;
    create(&bob).await.expect_error(403, "access_denied");
    get(
        &b,
        &format!("{V1}/workspaces/{}", owner.workspace_id),
        &bob.token,
    )
    .await
    .expect_error(404, "not_found");
    b.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_key_session_dies_with_its_key_revoked_or_expired_on_every_node() {
    let app = TestApp::start().await;
    let b = app.another_process(ProcessRole::Api).await;
    let owner = app.signup("owner@keys-life.example", "Keys").await;
    let projects = format!("{V1}/projects");

    // Revoked on A while a session made from it lives on B.
    let revoked = create_key(
        &app,
        &owner,
        json!({"name": "r", "scopes": ["projects:read"]}),
    )
    .await;
    let session = key_session(&b, &revoked).await;
    get(&b, &projects, &session).await.expect(200);
    app.delete(&format!("{V1}/api-keys/{}", revoked.id), &owner)
        .await
        .expect(204);
    eventually("B ends the revoked key's session", || async {
        get(&b, &projects, &session).await.status == 401
    })
    .await;
    get(&b, &projects, &revoked.full)
        .await
        .expect_error(401, "unauthorized");

    // Expired: the key's expiry passes while its session lives (both clocks moved).
    let expires_at = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let expiring = create_key(
        &app,
        &owner,
        json!({"name": "e", "scopes": ["projects:read"], "expires_at": expires_at}),
    )
    .await;
    let session = key_session(&b, &expiring).await;
    get(&b, &projects, &session).await.expect(200);
    for clock in [&app.runtime.state.clock, &b.runtime.state.clock] {
        clock.advance(chrono::Duration::hours(2));
    }
    get(&b, &projects, &session)
        .await
        .expect_error(401, "unauthorized");
    get(&b, &projects, &expiring.full)
        .await
        .expect_error(401, "unauthorized");
    app.call("GET", &projects, Some(&session), None, &[])
        .await
        .expect_error(401, "unauthorized");
    b.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_user_whose_last_workspace_is_deleted_keeps_an_account_and_no_workspace() {
    let app = TestApp::start().await;
    let b = app.another_process(ProcessRole::Api).await;
    let user = app.signup("alone@life.example", "Only one").await;
    app.delete(&format!("{V1}/workspaces/{}", user.workspace_id), &user)
        .await
        .expect(204);
    eventually("B sees no workspace for the user", || async {
        get(&b, &format!("{V1}/workspaces"), &user.token).await.body["meta"]["total"] == 0
    })
    .await;
    // Anything that acts in a workspace is refused, cleanly; the session itself lives.
    get(&b, &format!("{V1}/projects"), &user.token)
        .await
        .expect_error(403, "access_denied");
    get(&b, &format!("{V1}/api-keys"), &user.token)
        .await
        .expect_error(403, "access_denied");
    let session = get(&b, &format!("{V1}/auth/session"), &user.token).await;
    session.expect(200);
    assert_eq!(
        session.body["primaryWorkspace"],
        Value::Null,
        "{}",
        session.text
    );
    assert_eq!(session.body["scopes"], json!([]));
    // They can log in again and start over with a new workspace, on either node.
    let login = b
        .call(
            "POST",
            &format!("{V1}/auth/login"),
            None,
            Some(json!({"email": user.email, "password": "correct horse battery staple"})),
            &[],
        )
        .await;
    login.expect(200);
    assert_eq!(login.body["primaryWorkspace"], Value::Null);
    b.call(
        "POST",
        &format!("{V1}/workspaces"),
        Some(&user.token),
        Some(json!({"name": "Second start"})),
        &[],
    )
    .await
    .expect(201);
    get(&b, &format!("{V1}/projects"), &user.token)
        .await
        .expect(200);
    b.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_tier_change_is_an_owners_act_and_every_node_limits_by_it_at_once() {
    let app = TestApp::start().await;
    let b = app.another_process(ProcessRole::Api).await;
    let owner = app.signup("owner@tier.example", "Tiered").await;
    let admin = app.signup("admin@tier.example", "Admin's").await;
    let ws = owner.workspace_id.clone();
    app.post(
        &format!("{V1}/workspaces/{ws}/members"),
        &owner,
        json!({"email": admin.email, "role": "admin"}),
    )
    .await
    .expect(201);
    let key = create_key(
        &app,
        &owner,
        json!({"name": "follows", "scopes": ["projects:read"]}),
    )
    .await;
    let own = create_key(
        &app,
        &owner,
        json!({"name": "own tier", "scopes": ["projects:read"], "rate_limit_tier": "starter"}),
    )
    .await;
    let projects = format!("{V1}/projects");
    let limit = |response: Response| response.header("x-ratelimit-limit").map(str::to_string);
    for full in [&key.full, &own.full] {
        eventually("B knows the new keys", || async {
            get(&b, &projects, full).await.status == 200
        })
        .await;
    }
    // Free: 60 per minute, no burst (× the test scale of 100).
    assert_eq!(
        limit(get(&b, &projects, &key.full).await).as_deref(),
        Some("6000")
    );

    // Only an owner changes it.
    app.patch(
        &format!("{V1}/workspaces/{ws}"),
        &admin,
        json!({"tier": "pro"}),
    )
    .await
    .expect_error(403, "access_denied");
    let changed = app
        .patch(
            &format!("{V1}/workspaces/{ws}"),
            &owner,
            json!({"tier": "pro"}),
        )
        .await;
    changed.expect(200);
    assert_eq!(changed.body["data"]["tier"], "pro");
    // In force on A when the write answered, and on B within the notification's latency:
    // pro is 5,000 + 30% burst.
    assert_eq!(
        limit(app.call("GET", &projects, Some(&key.full), None, &[]).await).as_deref(),
        Some("650000")
    );
    eventually("B limits the key by the new tier", || async {
        limit(get(&b, &projects, &key.full).await).as_deref() == Some("650000")
    })
    .await;
    // A user session is judged by the workspace's tier too; a key with its own tier keeps it.
    assert_eq!(
        limit(get(&b, &projects, &owner.token).await).as_deref(),
        Some("650000")
    );
    assert_eq!(
        limit(get(&b, &projects, &own.full).await).as_deref(),
        Some("120000"),
        "starter: 1,000 + 20%"
    );
    // The change is an event of its own, with the tier before it.
    let event: Value =
        sqlx::query_scalar("SELECT payload FROM events WHERE event_type = 'WorkspaceTierChanged'")
            .fetch_one(app.pool())
            .await
            .expect("event");
    assert_eq!(
        event,
        json!({"WorkspaceTierChanged": {"tier": "pro", "previous_tier": "free"}})
    );
    b.stop().await;
    app.stop().await;
}
