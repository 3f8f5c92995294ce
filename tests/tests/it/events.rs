//! The workspace on every event: recorded from the aggregate when a command commits,
//! indexed, and upcast on read for events stored before it was recorded.

use pulsar_projections::log;
use pulsar_projections::Position;
use pulsar_tests::TestApp;
use serde_json::{json, Value};

const V1: &str = "/api/v1";

#[tokio::test]
async fn every_event_of_a_workspace_names_it_in_its_metadata() {
    let app = TestApp::start().await;
    let user = app.signup("meta@events.example", "Meta").await;
    let ws = user.workspace_id.clone();
    let project = app
        .post(&format!("{V1}/projects"), &user, json!({"name": "P"}))
        .await;
    project.expect(201);
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "k", "scopes": ["*"]}),
        )
        .await;
    key.expect(201);
    let key_id = key.body["data"]["id"].as_str().expect("id").to_string();
    app.delete(&format!("{V1}/api-keys/{key_id}"), &user)
        .await
        .expect(204);
    app.patch(
        &format!("{V1}/workspaces/{ws}"),
        &user,
        json!({"name": "Meta 2"}),
    )
    .await
    .expect(200);
    let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT aggregate_type, event_type, metadata->>'workspace_id' FROM events ORDER BY global_position",
    )
    .fetch_all(app.pool())
    .await
    .expect("events");
    assert!(rows.len() >= 7, "{rows:?}");
    for (aggregate_type, event_type, workspace) in &rows {
        match aggregate_type.as_str() {
            "User" => assert_eq!(
                workspace, &None,
                "{event_type}: users belong to no workspace"
            ),
            _ => assert_eq!(workspace.as_deref(), Some(ws.as_str()), "{event_type}"),
        }
    }
    // An index serves "this workspace's events in commit order" (the table is tiny, so
    // sequential scans are ruled out to see which plan is available).
    let mut conn = app.pool().acquire().await.expect("conn");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT global_position FROM events WHERE metadata->>'workspace_id' = 'ws_x'
           AND metadata ? 'workspace_id' ORDER BY transaction_id, global_position",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("plan");
    let plan = plan.join("\n");
    assert!(plan.contains("events_workspace_idx"), "{plan}");
    assert!(
        !plan.contains("Sort"),
        "in commit order without sorting: {plan}"
    );
    sqlx::query("RESET enable_seqscan")
        .execute(&mut *conn)
        .await
        .expect("reset");
    drop(conn);
    app.stop().await;
}

/// Appends a row by hand, the way postgres-es does, with metadata of the old shape
/// (no `workspace_id`).
async fn append_old(
    pool: &sqlx::PgPool,
    aggregate_type: &str,
    id: &str,
    sequence: i64,
    event_type: &str,
    payload: Value,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ($1, $2, $3, $4, '1.0', $5, $6)",
    )
    .bind(aggregate_type)
    .bind(id)
    .bind(sequence)
    .bind(event_type)
    .bind(payload)
    .bind(json!({"actor_type": "user", "actor_id": "usr_old", "request_id": "req_old",
                 "client_ip": "127.0.0.1", "user_agent": "old"}))
    .execute(pool)
    .await
    .expect("append");
}

#[tokio::test]
async fn events_stored_without_a_workspace_are_upcast_on_read_and_never_rewritten() {
    let db = pulsar_tests::TestDb::new().await;
    let pool = &db.pool;
    pulsar_api::db::migrate(pool).await.expect("migrate");
    let ws = "ws_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f";
    let key = "key_0193a5f7c6a87f4c9d5e3b2a1c0d9e80";
    let project = "proj_0193a5f7c6a87f4c9d5e3b2a1c0d9e81";
    // A workspace's own event, a key created and later revoked (the revocation names no
    // workspace in its payload), a project created in it, and a user.
    append_old(
        pool,
        "Workspace",
        ws,
        1,
        "WorkspaceDeleted",
        json!("WorkspaceDeleted"),
    )
    .await;
    append_old(
        pool,
        "ApiKey",
        key,
        1,
        "ApiKeyCreated",
        json!({"ApiKeyCreated": {
        "workspace_id": ws, "public_id": "psk_x", "prefix": "psk_x", "masked": "psk_x…",
        "settings": {"name": "old", "scopes": ["*"], "ip_allowlist": [], "expires_at": null,
                     "max_age_days": null, "rate_limit_tier": null},
        "created_by": {"type": "user", "id": "usr_old"}, "rotated_from": null}}),
    )
    .await;
    append_old(
        pool,
        "ApiKey",
        key,
        2,
        "ApiKeyRevoked",
        json!("ApiKeyRevoked"),
    )
    .await;
    append_old(
        pool,
        "Project",
        project,
        1,
        "ProjectDeleted",
        json!({"Deleted": {"workspace_id": ws}}),
    )
    .await;
    append_old(
        pool,
        "User",
        "usr_0193a5f7c6a87f4c9d5e3b2a1c0d9e82",
        1,
        "UserRegistered",
        json!({"UserRegistered": {"email": "old@example.com", "name": null}}),
    )
    .await;

    // The read horizon is cluster-wide: transactions of tests running alongside may
    // hold it back for a moment.
    let mut conn = pool.acquire().await.expect("conn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let events = loop {
        let events = log::read_after(&mut conn, Position::ZERO, 100)
            .await
            .expect("read");
        if events.len() == 5 || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let seen: Vec<(String, Option<&str>)> = events
        .iter()
        .map(|e| (e.event_type.clone(), e.workspace_id()))
        .collect();
    assert_eq!(
        seen,
        [
            ("WorkspaceDeleted".to_string(), Some(ws)),
            ("ApiKeyCreated".to_string(), Some(ws)),
            ("ApiKeyRevoked".to_string(), Some(ws)),
            ("ProjectDeleted".to_string(), Some(ws)),
            ("UserRegistered".to_string(), None),
        ]
    );
    // The upcast key event still decodes as the aggregate's event.
    assert!(events[2].decode::<pulsar_domain::api_key::ApiKey>().is_ok());
    // Nothing was rewritten.
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE metadata ? 'workspace_id'")
            .fetch_one(pool)
            .await
            .expect("count");
    assert_eq!(stored, 0);
}

/// The write path's repository: one-statement appends returning the log position, loads
/// of a snapshot and the events after it in one query, snapshots every 50 events.
#[tokio::test]
async fn long_streams_snapshot_and_load_in_one_query_with_exact_versions() {
    let app = TestApp::start().await;
    let user = app.signup("long@events.example", "Long").await;
    let created = app
        .post(&format!("{V1}/projects"), &user, json!({"name": "v1"}))
        .await;
    created.expect(201);
    let id = created.body["data"]["id"].as_str().expect("id").to_string();
    for n in 2..=120 {
        let response = app
            .call(
                "PATCH",
                &format!("{V1}/projects/{id}"),
                Some(&user.token),
                Some(json!({"name": format!("v{n}")})),
                &[("if-match", &format!("\"{}\"", n - 1))],
            )
            .await;
        response.expect(200);
        assert_eq!(response.header("etag"), Some(format!("\"{n}\"").as_str()));
        assert_eq!(
            response.body["data"]["name"],
            format!("v{n}"),
            "read your write"
        );
    }
    let (last_sequence, current_snapshot): (i64, i64) = sqlx::query_as(
        "SELECT last_sequence, current_snapshot FROM snapshots WHERE aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(app.pool())
    .await
    .expect("snapshot");
    assert_eq!((last_sequence, current_snapshot), (100, 2));
    // A stale version is refused after a snapshot as before it.
    app.call(
        "PATCH",
        &format!("{V1}/projects/{id}"),
        Some(&user.token),
        Some(json!({"name": "stale"})),
        &[("if-match", "\"100\"")],
    )
    .await
    .expect_error(412, "precondition_failed");
    app.stop().await;
}
