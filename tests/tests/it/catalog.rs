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
    let owner = pulsar_tests::every_kind_of_command(&app).await;
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
    // The workload reached every type but the one only time produces and the one never
    // stored (a test delivery).
    let missing: Vec<&String> = schemas
        .keys()
        .filter(|name| {
            !seen.contains_key(*name) && *name != "api_keys.expired" && *name != "webhooks.test"
        })
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
