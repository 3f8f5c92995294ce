//! The public event catalog: every type listed with its schema, documented under the
//! OpenAPI `webhooks` section, and every event a real workload writes published as a
//! payload that validates against its type's schema.

use std::collections::BTreeMap;

use pulsar_projections::public::publish_stream;
use pulsar_projections::{log, Position};
use pulsar_tests::TestApp;
use serde_json::{json, Value};

const V1: &str = "/api/v1";

#[tokio::test]
async fn every_published_event_validates_against_its_catalog_schema() {
    let app = TestApp::start().await;
    let owner = app.signup("owner@catalog.example", "Catalog").await;
    let other = app.signup("other@catalog.example", "Other").await;
    let ws = owner.workspace_id.clone();
    // Every kind of command.
    app.patch(
        &format!("{V1}/workspaces/{ws}"),
        &owner,
        json!({"name": "Catalog 2", "settings": {"timezone": "Europe/Berlin"}, "tier": "pro"}),
    )
    .await
    .expect(200);
    app.post(
        &format!("{V1}/workspaces/{ws}/members"),
        &owner,
        json!({"email": other.email, "role": "viewer"}),
    )
    .await
    .expect(201);
    app.patch(
        &format!("{V1}/workspaces/{ws}/members/{}", other.user_id),
        &owner,
        json!({"role": "admin"}),
    )
    .await
    .expect(200);
    app.delete(
        &format!("{V1}/workspaces/{ws}/members/{}", other.user_id),
        &owner,
    )
    .await
    .expect(204);
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &owner,
            json!({"name": "k", "scopes": ["*"], "ip_allowlist": ["10.0.0.0/8"]}),
        )
        .await;
    let key_id = key.body["data"]["id"].as_str().expect("id").to_string();
    app.patch(
        &format!("{V1}/api-keys/{key_id}"),
        &owner,
        json!({"name": "k2", "max_age_days": 30}),
    )
    .await
    .expect(200);
    let rotated = app
        .post(
            &format!("{V1}/api-keys/{key_id}/rotate"),
            &owner,
            json!({"grace_period_hours": 0}),
        )
        .await;
    rotated.expect(200);
    let new_key = rotated.body["data"]["id"].as_str().expect("id").to_string();
    app.delete(&format!("{V1}/api-keys/{new_key}"), &owner)
        .await
        .expect(204);
    let project = app
        .post(
            &format!("{V1}/projects"),
            &owner,
            json!({"name": "P", "tags": ["a"]}),
        )
        .await;
    let project = project.body["data"]["id"].as_str().expect("id").to_string();
    let company = app
        .post(
            &format!("{V1}/companies"),
            &owner,
            json!({"name": "C", "domain": "c.example"}),
        )
        .await;
    let company = company.body["data"]["id"].as_str().expect("id").to_string();
    let contact = app
        .post(
            &format!("{V1}/contacts"),
            &owner,
            json!({"name": "K", "email": "k@c.example", "company_id": company}),
        )
        .await;
    let contact = contact.body["data"]["id"].as_str().expect("id").to_string();
    for (path, body, patch) in [
        (
            "tasks",
            json!({"project_id": project, "title": "T", "due_date": "2026-12-24"}),
            json!({"status": "done"}),
        ),
        (
            "deals",
            json!({"name": "D", "amount_cents": 100, "company_id": company, "contact_id": contact}),
            json!({"stage": "won"}),
        ),
        (
            "documents",
            json!({"title": "Doc", "body": "# Hi"}),
            json!({"tags": ["x"]}),
        ),
    ] {
        let created = app.post(&format!("{V1}/{path}"), &owner, body).await;
        created.expect(201);
        let id = created.body["data"]["id"].as_str().expect("id").to_string();
        app.patch(&format!("{V1}/{path}/{id}"), &owner, patch)
            .await
            .expect(200);
        app.delete(&format!("{V1}/{path}/{id}"), &owner)
            .await
            .expect(204);
    }
    app.patch(
        &format!("{V1}/projects/{project}"),
        &owner,
        json!({"status": "archived"}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("{V1}/contacts/{contact}"),
        &owner,
        json!({"phone": "+44 20 7946 0958"}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("{V1}/companies/{company}"),
        &owner,
        json!({"domain": null}),
    )
    .await
    .expect(200);
    app.delete(&format!("{V1}/contacts/{contact}"), &owner)
        .await
        .expect(204);
    app.delete(&format!("{V1}/companies/{company}"), &owner)
        .await
        .expect(204);
    app.delete(&format!("{V1}/projects/{project}"), &owner)
        .await
        .expect(204);
    app.delete(&format!("{V1}/workspaces/{}", other.workspace_id), &other)
        .await
        .expect(204);

    // The catalog, as clients read it.
    let types = app.get(&format!("{V1}/event-types"), &owner).await;
    types.expect(200);
    let schemas: BTreeMap<String, Value> = types.body["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| {
            (
                t["type"].as_str().expect("type").to_string(),
                t["schema"].clone(),
            )
        })
        .collect();
    let document = app
        .call("GET", &format!("{V1}/openapi.json"), None, None, &[])
        .await;
    for name in schemas.keys() {
        assert!(
            document.body["webhooks"][name]["post"]["requestBody"].is_object(),
            "the OpenAPI webhooks section documents {name}"
        );
    }

    // Every stored event, published per aggregate, validates against its type's schema.
    let mut conn = app.pool().acquire().await.expect("conn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    let events = loop {
        let events = log::read_after(&mut conn, Position::ZERO, 10_000)
            .await
            .expect("read");
        if events.len() as i64 == total || std::time::Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut streams: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
    for event in events {
        streams
            .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
            .or_default()
            .push(event);
    }
    let mut seen = BTreeMap::<String, usize>::new();
    for ((aggregate_type, _), stream) in &streams {
        for published in publish_stream(stream)
            .expect("publishes")
            .into_iter()
            .flatten()
        {
            *seen.entry(published.event_type.to_string()).or_default() += 1;
            let schema = schemas
                .get(published.event_type)
                .unwrap_or_else(|| panic!("{} is listed by /event-types", published.event_type));
            let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
            let errors: Vec<String> = validator
                .iter_errors(&published.data)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{aggregate_type} {}: {errors:?}\n{}",
                published.event_type,
                published.data
            );
            assert!(published.id.starts_with("evt_"));
            let text = published.data.to_string();
            assert!(
                !text.contains("secret") && !text.contains("password"),
                "{text}"
            );
        }
    }
    // The workload reached every type but the ones only time produces.
    let missing: Vec<&String> = schemas
        .keys()
        .filter(|name| !seen.contains_key(*name) && *name != "api_keys.expired")
        .collect();
    assert!(missing.is_empty(), "not exercised: {missing:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_catalog_needs_webhooks_read() {
    let app = TestApp::start().await;
    let owner = app.signup("scope@catalog.example", "Scope").await;
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &owner,
            json!({"name": "k", "scopes": ["projects:read"]}),
        )
        .await;
    let full = key.body["data"]["key"].as_str().expect("key").to_string();
    app.call("GET", &format!("{V1}/event-types"), Some(&full), None, &[])
        .await
        .expect_error(403, "access_denied");
    app.stop().await;
}
