//! Projections are pure folds: replaying the log into fresh tables gives the live rows,
//! row for row, and the swap happens while the server keeps answering and writing.

use std::collections::BTreeMap;

use pulsar_tests::TestApp;
use serde_json::json;
use sqlx::PgPool;

const V1: &str = "/api/v1";

/// Every read model table the durable projections keep.
const TABLES: [&str; 16] = [
    "users",
    "workspaces",
    "workspace_members",
    "api_keys",
    "projects",
    "tasks",
    "contacts",
    "companies",
    "deals",
    "documents",
    "workspace_record_counts",
    "usage_minutes",
    "usage_hours",
    "usage_days",
    "seo_pages",
    "seo_issues",
];

/// Each table's rows, as JSON, in a stable order.
async fn snapshot(pool: &PgPool) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in TABLES {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t)::text FROM {table} t ORDER BY to_jsonb(t)::text"
        ))
        .fetch_all(pool)
        .await
        .expect("rows");
        out.insert(table, rows);
    }
    out
}

/// Index names of the read model tables, which a rebuild keeps.
async fn indexes(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename || '.' || indexname FROM pg_indexes
          WHERE schemaname = 'public' AND tablename = ANY($1) ORDER BY 1",
    )
    .bind(&TABLES[..])
    .fetch_all(pool)
    .await
    .expect("indexes")
}

/// Waits until the read models stop changing (every write has been projected, and
/// background work such as recording a rotation's end is done).
async fn settled(app: &TestApp) -> BTreeMap<&'static str, Vec<String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut last = snapshot(app.pool()).await;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        let now = snapshot(app.pool()).await;
        if now == last || std::time::Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn a_rebuild_of_every_read_model_gives_the_same_rows_and_the_server_keeps_going() {
    let app = TestApp::start().await;
    let owner = pulsar_tests::every_kind_of_command(&app).await;
    // Leave some of each kind standing too, not only their deletions.
    let project = app
        .post(
            &format!("{V1}/projects"),
            &owner,
            json!({"name": "Standing", "tags": ["a", "b"]}),
        )
        .await;
    let project = project.body["data"]["id"].as_str().expect("id").to_string();
    let company = app
        .post(
            &format!("{V1}/companies"),
            &owner,
            json!({"name": "Co", "domain": "co.example"}),
        )
        .await;
    let company = company.body["data"]["id"].as_str().expect("id").to_string();
    let contact = app
        .post(
            &format!("{V1}/contacts"),
            &owner,
            json!({"name": "Ann", "company_id": company}),
        )
        .await;
    let contact = contact.body["data"]["id"].as_str().expect("id").to_string();
    for (path, body) in [
        (
            "tasks",
            json!({"project_id": project, "title": "Standing", "assignee_id": owner.user_id}),
        ),
        (
            "deals",
            json!({"name": "Big", "company_id": company, "contact_id": contact, "amount_cents": 5}),
        ),
        (
            "documents",
            json!({"title": "Kept", "body": "text", "tags": ["x"]}),
        ),
    ] {
        app.post(&format!("{V1}/{path}"), &owner, body)
            .await
            .expect(201);
    }
    // The rotation with no grace is recorded as ended by the maintenance task.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM events WHERE event_type = 'ApiKeyExpiredByRotation'",
    )
    .fetch_one(app.pool())
    .await
    .expect("count")
        == 0
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let before = settled(&app).await;
    let index_names = indexes(app.pool()).await;
    let oids = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT oid::bigint FROM pg_class WHERE relnamespace = 'public'::regnamespace
               AND relname = ANY($1) AND relkind = 'r' ORDER BY relname",
        )
        .bind(&TABLES[..10])
        .fetch_all(&pool)
        .await
        .expect("oids")
    };
    let tables_before = oids(app.pool().clone()).await;
    for table in TABLES {
        assert!(!before[table].is_empty(), "{table} has rows to compare");
    }

    let mut seen = Vec::new();
    let reports = pulsar_api::runtime::rebuild(app.pool(), "all", |p| seen.push((p.name, p.done)))
        .await
        .expect("rebuild");
    assert_eq!(reports.len(), pulsar_api::runtime::READ_MODELS.len());
    assert!(
        seen.iter()
            .any(|(name, done)| *name == "tasks" && *done > 0),
        "progress reported"
    );
    let after = snapshot(app.pool()).await;
    for table in TABLES {
        assert_eq!(
            before[table], after[table],
            "{table} differs after a rebuild"
        );
    }
    assert_eq!(index_names, indexes(app.pool()).await, "index names kept");
    let tables_after = oids(app.pool().clone()).await;
    assert_eq!(tables_after.len(), 10);
    assert!(
        tables_before.iter().all(|oid| !tables_after.contains(oid)),
        "every owned table was replaced by its rebuilt copy"
    );

    // The live projectors go on from the same checkpoint: a write is read back at once.
    let project = app
        .post(&format!("{V1}/projects"), &owner, json!({"name": "After"}))
        .await;
    project.expect(201);
    let listed = app
        .get(&format!("{V1}/projects?search=After"), &owner)
        .await;
    assert_eq!(listed.body["meta"]["total"], 1, "{}", listed.text);
    app.stop().await;
}

#[tokio::test]
async fn a_rebuild_under_concurrent_writes_swaps_in_tables_that_include_them() {
    let app = TestApp::start().await;
    let owner = app.signup("busy@rebuild.example", "Busy").await;
    app.patch(
        &format!("{V1}/workspaces/{}", owner.workspace_id),
        &owner,
        json!({"tier": "pro"}),
    )
    .await
    .expect(200);
    for i in 0..50 {
        app.post(
            &format!("{V1}/documents"),
            &owner,
            json!({"title": format!("before {i}")}),
        )
        .await
        .expect(201);
    }
    let writer = {
        let app_router = app.router.clone();
        let token = owner.token.clone();
        tokio::spawn(async move {
            let mut written = 0;
            for i in 0..40 {
                let response = pulsar_tests::call(
                    &app_router,
                    "POST",
                    &format!("{V1}/documents"),
                    Some(&token),
                    Some(json!({"title": format!("during {i}")})),
                    &[],
                )
                .await;
                assert_eq!(response.status, 201, "{}", response.text);
                written += 1;
            }
            written
        })
    };
    pulsar_api::runtime::rebuild(app.pool(), "documents", |_| {})
        .await
        .expect("rebuild");
    let written = writer.await.expect("writer");
    settled(&app).await;
    let listed = app.get(&format!("{V1}/documents?per_page=1"), &owner).await;
    assert_eq!(
        listed.body["meta"]["total"],
        50 + written,
        "{}",
        listed.text
    );
    let counts: i64 = sqlx::query_scalar(
        "SELECT count FROM workspace_record_counts WHERE feature = 'documents' AND workspace_id = $1",
    )
    .bind(&owner.workspace_id)
    .fetch_one(app.pool())
    .await
    .expect("count");
    assert_eq!(counts, 50 + written as i64);
    // And a quiet rebuild now gives exactly the live rows.
    let live = snapshot(app.pool()).await;
    pulsar_api::runtime::rebuild(app.pool(), "documents", |_| {})
        .await
        .expect("rebuild");
    assert_eq!(live, snapshot(app.pool()).await);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_read_model_is_refused_by_name() {
    let app = TestApp::start().await;
    let error = pulsar_api::runtime::rebuild(app.pool(), "nope", |_| {})
        .await
        .expect_err("unknown");
    assert!(error.to_string().contains("identity"), "{error}");
    app.stop().await;
}
