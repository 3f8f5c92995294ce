//! Projects, tasks, contacts, companies, deals and documents (API.md section 4), through
//! the real router: every list parameter checked against the rows it must return.

use std::sync::Arc;

use pulsar_tests::{Response, TestApp, User};
use serde_json::{json, Value};

const V1: &str = "/api/v1";

/// Events in the log, threshold alerts aside (they follow creations in the background,
/// so a count taken right after a creation may not include them yet).
async fn events(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type <> 'EntitlementPeriod'")
        .fetch_one(app.pool())
        .await
        .expect("count")
}

/// POSTs and returns the created item.
async fn create(app: &TestApp, user: &User, collection: &str, body: Value) -> Value {
    let response = app.post(&format!("{V1}/{collection}"), user, body).await;
    response.expect(201);
    assert!(response.body["message"]
        .as_str()
        .is_some_and(|m| m.ends_with("created successfully.")));
    assert_eq!(
        response.header("etag"),
        Some(format!("\"{}\"", response.body["data"]["version"]).as_str())
    );
    response.body["data"].clone()
}

fn id(item: &Value) -> String {
    item["id"].as_str().expect("id").to_string()
}

/// The ids of a list answer, in order.
fn ids(response: &Response) -> Vec<String> {
    response.expect(200);
    response.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(id)
        .collect()
}

async fn list(app: &TestApp, user: &User, collection: &str, query: &str) -> Response {
    app.get(&format!("{V1}/{collection}?{query}"), user).await
}

#[tokio::test]
async fn projects_support_crud_and_every_list_parameter() {
    let app = TestApp::start().await;
    let user = app.signup("pm@example.com", "PM").await;
    let apollo = create(
        &app,
        &user,
        "projects",
        json!({"name": "  Apollo launch ", "description": "Moon rocket program", "tags": ["space", "nasa", "space"], "owner_id": user.user_id}),
    )
    .await;
    assert_eq!(apollo["name"], "Apollo launch", "names are trimmed");
    assert_eq!(
        apollo["tags"],
        json!(["space", "nasa"]),
        "tags de-duplicated"
    );
    assert_eq!(apollo["status"], "active", "status defaults to active");
    assert_eq!(apollo["created_by"]["id"], user.user_id.as_str());
    assert_eq!(apollo["created_by"]["name"], "Test User");
    let gemini = create(
        &app,
        &user,
        "projects",
        json!({"name": "Gemini", "status": "archived", "tags": ["space"]}),
    )
    .await;
    let zephyr = create(
        &app,
        &user,
        "projects",
        json!({"name": "Zephyr garden", "description": "Plants"}),
    )
    .await;
    let (apollo_id, gemini_id, zephyr_id) = (id(&apollo), id(&gemini), id(&zephyr));

    // Get, with its ETag.
    let got = app.get(&format!("{V1}/projects/{apollo_id}"), &user).await;
    got.expect(200);
    assert_eq!(got.body["data"], apollo);
    assert_eq!(got.header("etag"), Some("\"1\""));

    // Default sort is newest first; the meta block counts.
    let all = list(&app, &user, "projects", "").await;
    assert_eq!(
        ids(&all),
        vec![zephyr_id.clone(), gemini_id.clone(), apollo_id.clone()]
    );
    assert_eq!(all.body["meta"]["total"], 3);

    // Filters, exact and comma lists; closed sets refuse unknown values.
    assert_eq!(
        ids(&list(&app, &user, "projects", "status=archived").await),
        vec![gemini_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "projects", "status=active,archived&sort=name").await),
        vec![apollo_id.clone(), gemini_id.clone(), zephyr_id.clone()]
    );
    list(&app, &user, "projects", "status=open")
        .await
        .expect_error(400, "bad_request");
    assert_eq!(
        ids(&list(&app, &user, "projects", "tag=space&sort=name").await),
        vec![apollo_id.clone(), gemini_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "projects", "tag=space,nasa").await),
        vec![apollo_id.clone()]
    );
    assert_eq!(
        ids(&list(
            &app,
            &user,
            "projects",
            &format!("owner_id={}", user.user_id)
        )
        .await),
        vec![apollo_id.clone()]
    );

    // Full text over name, description and tags.
    assert_eq!(
        ids(&list(&app, &user, "projects", "search=rocket").await),
        vec![apollo_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "projects", "search=nasa").await),
        vec![apollo_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "projects", "search=plants").await),
        vec![zephyr_id.clone()]
    );

    // Sort, several keys, both directions; unknown fields are 400.
    assert_eq!(
        ids(&list(&app, &user, "projects", "sort=-status,name").await),
        vec![gemini_id.clone(), apollo_id.clone(), zephyr_id.clone()]
    );
    list(&app, &user, "projects", "sort=priority")
        .await
        .expect_error(400, "bad_request");
    list(&app, &user, "projects", "colour=red")
        .await
        .expect_error(400, "bad_request");
    list(&app, &user, "projects", "include=project")
        .await
        .expect_error(400, "bad_request");

    // Pagination with meta and links.
    let page = list(&app, &user, "projects", "sort=name&per_page=2&page=2").await;
    assert_eq!(ids(&page), vec![zephyr_id.clone()]);
    assert_eq!(
        page.body["meta"],
        json!({"current_page": 2, "from": 3, "last_page": 2, "per_page": 2, "to": 3, "total": 3})
    );
    assert_eq!(
        page.body["links"]["prev"],
        "/api/v1/projects?sort=name&per_page=2&page=1"
    );
    assert_eq!(page.body["links"]["next"], Value::Null);
    assert_eq!(
        ids(&list(&app, &user, "projects", "sort=name&limit=1").await),
        vec![apollo_id.clone()]
    );

    // Sparse fields, and includes (kept even when `fields` narrows the item).
    let sparse = list(
        &app,
        &user,
        "projects",
        "fields=id,name&include=owner,tags&sort=name&per_page=1",
    )
    .await;
    assert_eq!(
        sparse.body["data"][0],
        json!({
            "id": apollo_id, "name": "Apollo launch",
            "owner": {"id": user.user_id, "name": "Test User", "role": "owner"},
            "tags": [{"name": "space", "count": 2}, {"name": "nasa", "count": 1}],
        })
    );
    let no_owner = list(&app, &user, "projects", "include=owner&status=archived").await;
    assert_eq!(no_owner.body["data"][0]["owner"], Value::Null);

    // Time ranges.
    let created = apollo["created_at"].as_str().expect("created_at");
    let after = list(
        &app,
        &user,
        "projects",
        &format!("created_after={}&sort=name", urlencode(created)),
    )
    .await;
    assert_eq!(ids(&after), vec![gemini_id.clone(), zephyr_id.clone()]);
    list(&app, &user, "projects", "created_after=yesterday")
        .await
        .expect_error(400, "bad_request");

    // Combination: filter + search + sort + fields + pagination.
    let combo = list(
        &app,
        &user,
        "projects",
        "status=active&search=apollo%20OR%20zephyr&sort=-name&fields=name&per_page=1&page=2",
    )
    .await;
    assert_eq!(combo.body["data"], json!([{"name": "Apollo launch"}]));
    assert_eq!(combo.body["meta"]["total"], 2);

    // Patch: the changed fields, null clears, the version moves, lists and search follow.
    let patched = app
        .patch(
            &format!("{V1}/projects/{zephyr_id}"),
            &user,
            json!({"name": "Zephyr orchard", "description": null, "tags": ["fruit"]}),
        )
        .await;
    patched.expect(200);
    assert_eq!(patched.body["data"]["name"], "Zephyr orchard");
    assert_eq!(patched.body["data"]["description"], Value::Null);
    assert_eq!(patched.body["data"]["version"], 2);
    assert_eq!(patched.header("etag"), Some("\"2\""));
    assert!(ids(&list(&app, &user, "projects", "search=plants").await).is_empty());
    assert_eq!(
        ids(&list(&app, &user, "projects", "search=orchard").await),
        vec![zephyr_id.clone()]
    );
    let changed: Value = sqlx::query_scalar(
        "SELECT payload FROM events WHERE aggregate_id = $1 AND event_type = 'ProjectUpdated'",
    )
    .bind(&zephyr_id)
    .fetch_one(app.pool())
    .await
    .expect("event");
    assert_eq!(
        changed["Updated"]["changed"],
        json!(["description", "name", "tags"])
    );
    assert_eq!(
        changed["Updated"]["fields"]["name"], "Zephyr orchard",
        "events carry the resulting state"
    );

    // A required field cannot be cleared; nothing is written.
    let before = events(&app).await;
    let cleared = app
        .patch(
            &format!("{V1}/projects/{zephyr_id}"),
            &user,
            json!({"name": null}),
        )
        .await;
    cleared.expect_error(422, "validation_failed");
    assert!(
        cleared.body["errors"]["name"].is_array(),
        "{}",
        cleared.text
    );
    assert_eq!(events(&app).await, before);

    // If-Match: stale is 412 with nothing written, current goes through.
    let stale = app
        .call(
            "PATCH",
            &format!("{V1}/projects/{zephyr_id}"),
            Some(&user.token),
            Some(json!({"status": "archived"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    stale.expect_error(412, "precondition_failed");
    assert_eq!(events(&app).await, before);
    let current = app
        .call(
            "DELETE",
            &format!("{V1}/projects/{zephyr_id}"),
            Some(&user.token),
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(current.status, 204, "{}", current.text);
    app.get(&format!("{V1}/projects/{zephyr_id}"), &user)
        .await
        .expect_error(404, "not_found");
    app.delete(&format!("{V1}/projects/{zephyr_id}"), &user)
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        ids(&list(&app, &user, "projects", "sort=name").await),
        vec![apollo_id, gemini_id]
    );
    app.stop().await;
}

fn urlencode(value: &str) -> String {
    value.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn tasks_reference_a_project_of_the_same_workspace() {
    let app = TestApp::start().await;
    let user = app.signup("tasks@example.com", "Tasks").await;
    let other = app.signup("other@example.com", "Other").await;
    let project = id(&create(&app, &user, "projects", json!({"name": "Site"})).await);
    let side = id(&create(&app, &user, "projects", json!({"name": "Side"})).await);
    let foreign = id(&create(&app, &other, "projects", json!({"name": "Theirs"})).await);

    let write = create(
        &app,
        &user,
        "tasks",
        json!({"project_id": project, "title": "Write copy", "description": "Landing page text", "priority": "high", "due_date": "2026-12-01", "tags": ["copy"], "assignee_id": user.user_id}),
    )
    .await;
    assert_eq!(write["status"], "todo");
    assert_eq!(write["due_date"], "2026-12-01");
    let review = create(&app, &user, "tasks", json!({"project_id": project, "title": "Review copy", "priority": "low", "status": "in_progress"})).await;
    let deploy = create(&app, &user, "tasks", json!({"project_id": side, "title": "Deploy site", "status": "done", "due_date": "2026-11-30"})).await;
    let (write_id, review_id, deploy_id) = (id(&write), id(&review), id(&deploy));

    // Dangling, foreign and non-member references are 422 on the field, nothing written;
    // another workspace's project answers exactly as a missing one.
    let before = events(&app).await;
    let missing = app
        .post(
            &format!("{V1}/tasks"),
            &user,
            json!({"project_id": "proj_00000000000000000000000000000000", "title": "x"}),
        )
        .await;
    missing.expect_error(422, "validation_failed");
    let theirs = app
        .post(
            &format!("{V1}/tasks"),
            &user,
            json!({"project_id": foreign, "title": "x"}),
        )
        .await;
    theirs.expect_error(422, "validation_failed");
    assert_eq!(theirs.body["errors"], missing.body["errors"].clone());
    let stranger = app
        .post(
            &format!("{V1}/tasks"),
            &user,
            json!({"project_id": project, "title": "x", "assignee_id": other.user_id}),
        )
        .await;
    stranger.expect_error(422, "validation_failed");
    assert!(stranger.body["errors"]["assignee_id"].is_array());
    assert_eq!(events(&app).await, before);

    // Filters, sort by rank, search and includes.
    assert_eq!(
        ids(&list(
            &app,
            &user,
            "tasks",
            &format!("project_id={project}&sort=title")
        )
        .await),
        vec![review_id.clone(), write_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "tasks", "sort=-priority,title").await),
        vec![write_id.clone(), deploy_id.clone(), review_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "tasks", "sort=due_date").await),
        vec![deploy_id.clone(), write_id.clone(), review_id.clone()],
        "no date sorts last"
    );
    assert_eq!(
        ids(&list(
            &app,
            &user,
            "tasks",
            "status=todo,in_progress&search=copy&sort=-status"
        )
        .await),
        vec![review_id.clone(), write_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "tasks", "search=landing").await),
        vec![write_id.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "tasks", "priority=low").await),
        vec![review_id.clone()]
    );
    list(&app, &user, "tasks", "priority=urgent")
        .await
        .expect_error(400, "bad_request");
    let included = list(
        &app,
        &user,
        "tasks",
        &format!(
            "include=project,assignee&fields=id&assignee_id={}",
            user.user_id
        ),
    )
    .await;
    assert_eq!(
        included.body["data"],
        json!([{"id": write_id, "project": {"id": project, "name": "Site", "status": "active"},
                "assignee": {"id": user.user_id, "name": "Test User", "role": "owner"}}])
    );

    // Moving a task checks the new project; a deleted project stops being a valid target
    // and shows as a null include, while its tasks stay editable.
    let moved = app
        .patch(
            &format!("{V1}/tasks/{review_id}"),
            &user,
            json!({"project_id": side}),
        )
        .await;
    moved.expect(200);
    assert_eq!(moved.body["data"]["project_id"], side.as_str());
    app.patch(
        &format!("{V1}/tasks/{review_id}"),
        &user,
        json!({"project_id": foreign}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.delete(&format!("{V1}/projects/{side}"), &user)
        .await
        .expect(204);
    app.patch(
        &format!("{V1}/tasks/{write_id}"),
        &user,
        json!({"project_id": side}),
    )
    .await
    .expect_error(422, "validation_failed");
    let orphan = app
        .get(
            &format!("{V1}/tasks/{review_id}?include=project&fields=id,project_id"),
            &user,
        )
        .await;
    orphan.expect(200);
    assert_eq!(
        orphan.body["data"],
        json!({"id": review_id, "project_id": side, "project": null})
    );
    app.get(&format!("{V1}/tasks/{review_id}?status=todo"), &user)
        .await
        .expect_error(400, "bad_request");
    let orphan = list(&app, &user, "tasks", "include=project&status=in_progress").await;
    assert_eq!(orphan.body["data"][0]["project"], Value::Null);
    app.patch(
        &format!("{V1}/tasks/{review_id}"),
        &user,
        json!({"status": "done"}),
    )
    .await
    .expect(200);
    app.stop().await;
}

#[tokio::test]
async fn crm_contacts_companies_and_deals() {
    let app = TestApp::start().await;
    let user = app.signup("crm@example.com", "CRM").await;
    let acme = create(
        &app,
        &user,
        "companies",
        json!({"name": "Acme", "domain": "ACME.example"}),
    )
    .await;
    assert_eq!(acme["domain"], "acme.example");
    let globex = id(&create(&app, &user, "companies", json!({"name": "Globex"})).await);
    let acme = id(&acme);
    let ada = create(&app, &user, "contacts", json!({"name": "Ada Lovelace", "email": " Ada@Engines.example ", "phone": "+44 20 7946 0958", "company_id": acme})).await;
    assert_eq!(ada["email"], "ada@engines.example");
    let ada = id(&ada);
    let bob = id(&create(&app, &user, "contacts", json!({"name": "Bob"})).await);
    let big = id(&create(&app, &user, "deals", json!({"name": "Big deal", "amount_cents": 500000, "currency": "eur", "stage": "qualified", "company_id": acme, "contact_id": ada})).await);
    let small = create(
        &app,
        &user,
        "deals",
        json!({"name": "Small deal", "amount_cents": 1000}),
    )
    .await;
    assert_eq!(
        (small["currency"].clone(), small["stage"].clone()),
        (json!("USD"), json!("lead"))
    );
    let small = id(&small);

    assert_eq!(
        ids(&list(&app, &user, "companies", "search=acme").await),
        vec![acme.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "companies", "sort=-name").await),
        vec![globex.clone(), acme.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "contacts", &format!("company_id={acme}")).await),
        vec![ada.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "contacts", "search=engines").await),
        vec![ada.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "contacts", "sort=name").await),
        vec![ada.clone(), bob.clone()]
    );
    let with_company = list(
        &app,
        &user,
        "contacts",
        "include=company&fields=name,company&sort=name",
    )
    .await;
    assert_eq!(
        with_company.body["data"],
        json!([{"name": "Ada Lovelace", "company": {"id": acme, "name": "Acme", "domain": "acme.example"}},
               {"name": "Bob", "company": null}])
    );
    assert_eq!(
        ids(&list(&app, &user, "deals", "sort=-amount_cents").await),
        vec![big.clone(), small.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "deals", "stage=qualified").await),
        vec![big.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "deals", "currency=USD").await),
        vec![small.clone()]
    );
    list(&app, &user, "deals", "stage=closed")
        .await
        .expect_error(400, "bad_request");
    let deal = list(
        &app,
        &user,
        "deals",
        "include=company,contact&stage=qualified&fields=id",
    )
    .await;
    assert_eq!(
        deal.body["data"][0]["contact"],
        json!({"id": ada, "name": "Ada Lovelace", "email": "ada@engines.example"})
    );
    assert_eq!(deal.body["data"][0]["company"]["id"], acme.as_str());
    let won = app
        .patch(
            &format!("{V1}/deals/{small}"),
            &user,
            json!({"stage": "won", "contact_id": bob}),
        )
        .await;
    won.expect(200);
    assert_eq!(
        (
            won.body["data"]["stage"].clone(),
            won.body["data"]["contact_id"].clone()
        ),
        (json!("won"), json!(bob))
    );
    // A deal cannot point at a contact as its company.
    app.patch(
        &format!("{V1}/deals/{small}"),
        &user,
        json!({"company_id": ada}),
    )
    .await
    .expect_error(422, "validation_failed");
    app.delete(&format!("{V1}/companies/{globex}"), &user)
        .await
        .expect(204);
    assert_eq!(ids(&list(&app, &user, "companies", "").await), vec![acme]);
    app.stop().await;
}

#[tokio::test]
async fn documents_search_their_body_and_count_tags() {
    let app = TestApp::start().await;
    let user = app.signup("docs@example.com", "Docs").await;
    let handbook = id(&create(&app, &user, "documents", json!({"title": "Handbook", "body": "# Onboarding\nVacation policy and expenses.", "tags": ["hr", "policy"]})).await);
    let security = id(&create(
        &app,
        &user,
        "documents",
        json!({"title": "Security", "body": "Rotate keys every 90 days.", "tags": ["policy"]}),
    )
    .await);
    assert_eq!(
        ids(&list(&app, &user, "documents", "search=vacation").await),
        vec![handbook.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "documents", "search=rotate%20keys").await),
        vec![security.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "documents", "tag=policy&sort=title").await),
        vec![handbook.clone(), security.clone()]
    );
    assert_eq!(
        ids(&list(&app, &user, "documents", "tag=hr").await),
        vec![handbook.clone()]
    );
    let tags = list(
        &app,
        &user,
        "documents",
        "include=tags&sort=title&fields=title",
    )
    .await;
    assert_eq!(
        tags.body["data"][0],
        json!({"title": "Handbook", "tags": [{"name": "hr", "count": 1}, {"name": "policy", "count": 2}]})
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_422_with_field_messages_and_leaves_no_event() {
    let app = TestApp::start().await;
    let user = app.signup("bad@example.com", "Bad").await;
    let project = id(&create(&app, &user, "projects", json!({"name": "P"})).await);
    let long = "x".repeat(201);
    let cases = [
        ("projects", json!({"name": 42}), "name"),
        ("projects", json!({}), "name"),
        ("projects", json!({"name": "   "}), "name"),
        ("projects", json!({"name": long}), "name"),
        ("projects", json!({"name": "P", "status": "open"}), "status"),
        ("projects", json!({"name": "P", "tags": "a,b"}), "tags"),
        ("projects", json!({"name": "P", "tags": [""]}), "tags.0"),
        ("projects", json!({"name": "P", "colour": "red"}), "colour"),
        (
            "projects",
            json!({"name": "P", "owner_id": "usr_nobody"}),
            "owner_id",
        ),
        (
            "tasks",
            json!({"project_id": project, "title": "T", "due_date": "2026-02-30"}),
            "due_date",
        ),
        (
            "tasks",
            json!({"project_id": project, "title": "T", "due_date": "tomorrow"}),
            "due_date",
        ),
        (
            "tasks",
            json!({"project_id": project, "title": "T", "priority": "urgent"}),
            "priority",
        ),
        ("tasks", json!({"title": "T"}), "project_id"),
        (
            "tasks",
            json!({"project_id": "proj_missing", "title": "T"}),
            "project_id",
        ),
        ("contacts", json!({"name": "C", "email": "nope"}), "email"),
        (
            "contacts",
            json!({"name": "C", "company_id": project}),
            "company_id",
        ),
        (
            "companies",
            json!({"name": "C", "domain": "not a domain"}),
            "domain",
        ),
        (
            "deals",
            json!({"name": "D", "amount_cents": "100"}),
            "amount_cents",
        ),
        (
            "deals",
            json!({"name": "D", "amount_cents": -5}),
            "amount_cents",
        ),
        (
            "deals",
            json!({"name": "D", "amount_cents": 1.5}),
            "amount_cents",
        ),
        (
            "deals",
            json!({"name": "D", "currency": "EURO"}),
            "currency",
        ),
        ("deals", json!({"name": "D", "stage": "closed"}), "stage"),
        (
            "deals",
            json!({"name": "D", "contact_id": "cont_missing"}),
            "contact_id",
        ),
        ("documents", json!({"title": "D", "body": 7}), "body"),
    ];
    let before = events(&app).await;
    for (collection, body, field) in cases {
        let response = app
            .post(&format!("{V1}/{collection}"), &user, body.clone())
            .await;
        assert_eq!(
            response.status, 422,
            "{collection} {body}: {}",
            response.text
        );
        assert_eq!(response.body["error"], "validation_failed");
        let messages = &response.body["errors"][field];
        assert!(
            messages
                .as_array()
                .is_some_and(|m| !m.is_empty() && m.iter().all(Value::is_string)),
            "{collection} {body}: no message for {field}: {}",
            response.text
        );
    }
    // Patches are typed the same way.
    for (body, field) in [
        (json!({"status": 3}), "status"),
        (json!({"name": ["x"]}), "name"),
        (json!({"nope": 1}), "nope"),
    ] {
        let response = app
            .patch(&format!("{V1}/projects/{project}"), &user, body.clone())
            .await;
        assert_eq!(response.status, 422, "{body}: {}", response.text);
        assert!(
            response.body["errors"][field].is_array(),
            "{body}: {}",
            response.text
        );
    }
    assert_eq!(events(&app).await, before, "no refused input left an event");
    app.post(
        &format!("{V1}/projects"),
        &user,
        json!(["not", "an", "object"]),
    )
    .await
    .expect_error(400, "bad_request");
    app.call(
        "POST",
        &format!("{V1}/projects"),
        Some(&user.token),
        None,
        &[],
    )
    .await
    .expect_error(415, "unsupported_media_type");
    assert_eq!(events(&app).await, before);
    app.stop().await;
}

#[tokio::test]
async fn another_workspace_is_404_on_every_endpoint() {
    let app = TestApp::start().await;
    let owner = app.signup("owner@example.com", "Owner").await;
    let intruder = app.signup("intruder@example.com", "Intruder").await;
    let project = id(&create(&app, &owner, "projects", json!({"name": "Secret"})).await);
    let company = id(&create(&app, &owner, "companies", json!({"name": "Secret Co"})).await);
    let contact = id(&create(
        &app,
        &owner,
        "contacts",
        json!({"name": "Secret Person", "company_id": company}),
    )
    .await);
    let items = [
        ("projects", project.clone()),
        (
            "tasks",
            id(&create(
                &app,
                &owner,
                "tasks",
                json!({"project_id": project, "title": "Secret task"}),
            )
            .await),
        ),
        ("contacts", contact.clone()),
        ("companies", company.clone()),
        (
            "deals",
            id(&create(
                &app,
                &owner,
                "deals",
                json!({"name": "Secret deal", "company_id": company, "contact_id": contact}),
            )
            .await),
        ),
        (
            "documents",
            id(&create(&app, &owner, "documents", json!({"title": "Secret doc"})).await),
        ),
    ];
    let before = events(&app).await;
    let patches = [
        json!({"name": "x"}),
        json!({"title": "x"}),
        json!({"name": "x"}),
        json!({"name": "x"}),
        json!({"name": "x"}),
        json!({"title": "x"}),
    ];
    for ((collection, item), patch) in items.iter().zip(patches) {
        let path = format!("{V1}/{collection}/{item}");
        app.get(&path, &intruder)
            .await
            .expect_error(404, "not_found");
        app.patch(&path, &intruder, patch)
            .await
            .expect_error(404, "not_found");
        app.delete(&path, &intruder)
            .await
            .expect_error(404, "not_found");
        // Naming the other workspace explicitly does not help.
        let named = app
            .call(
                "GET",
                &path,
                Some(&intruder.token),
                None,
                &[("x-workspace-id", &owner.workspace_id)],
            )
            .await;
        assert!(
            matches!(named.status, 403 | 404),
            "{collection}: {}",
            named.text
        );
        let listed = list(&app, &intruder, collection, "").await;
        assert_eq!(listed.body["meta"]["total"], 0, "{collection}");
        let searched = list(&app, &intruder, collection, "search=secret").await;
        assert_eq!(searched.body["meta"]["total"], 0, "{collection}");
        // The owner still sees it, unchanged.
        app.get(&path, &owner).await.expect(200);
    }
    // Relation checks treat another workspace's ids as missing.
    create(&app, &intruder, "projects", json!({"name": "Mine"})).await;
    let before_refs = events(&app).await;
    for (collection, body, field) in [
        (
            "tasks",
            json!({"project_id": project, "title": "x"}),
            "project_id",
        ),
        (
            "contacts",
            json!({"name": "x", "company_id": company}),
            "company_id",
        ),
        (
            "deals",
            json!({"name": "x", "contact_id": contact}),
            "contact_id",
        ),
        (
            "projects",
            json!({"name": "x", "owner_id": owner.user_id}),
            "owner_id",
        ),
    ] {
        let response = app
            .post(&format!("{V1}/{collection}"), &intruder, body)
            .await;
        response.expect_error(422, "validation_failed");
        assert!(
            response.body["errors"][field].is_array(),
            "{}",
            response.text
        );
    }
    assert_eq!(events(&app).await, before_refs);
    assert_eq!(
        events(&app).await,
        before + 1,
        "only the intruder's own project was written"
    );
    app.stop().await;
}

#[tokio::test]
async fn creating_a_task_is_idempotent_in_sequence_and_concurrently() {
    let app = Arc::new(TestApp::start().await);
    let user = Arc::new(app.signup("idem-tasks@example.com", "Idem").await);
    let project = id(&create(&app, &user, "projects", json!({"name": "P"})).await);
    let body = json!({"project_id": project, "title": "Exactly once"});
    let send = |key: &'static str| {
        let (app, user, body) = (app.clone(), user.clone(), body.clone());
        async move {
            app.call(
                "POST",
                "/api/v1/tasks",
                Some(&user.token),
                Some(body),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = send("task-seq").await;
    first.expect(201);
    let second = send("task-seq").await;
    assert_eq!((second.status, &second.body), (201, &first.body));

    let concurrent: Vec<Response> =
        futures::future::join_all((0..10).map(|_| send("task-par"))).await;
    let created: Vec<&Response> = concurrent.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty());
    for response in &concurrent {
        assert!(
            response.status == 201
                || (response.status == 409 && response.body["error"] == "idempotency_conflict"),
            "{}",
            response.text
        );
    }
    assert!(
        created.iter().all(|r| r.body == created[0].body),
        "every success replays the same answer"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(count, 2, "one task per key");
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'TaskCreated'")
            .fetch_one(app.pool())
            .await
            .expect("count");
    assert_eq!(events, 2);
}

#[tokio::test]
async fn tier_limits_and_scopes_guard_creation() {
    let app = TestApp::start().await;
    let user = app.signup("limits@example.com", "Limits").await;
    let mut projects = Vec::new();
    for n in 0..5 {
        projects.push(id(&create(
            &app,
            &user,
            "projects",
            json!({"name": format!("P{n}")}),
        )
        .await));
    }
    let before = events(&app).await;
    let refused = app
        .post(
            &format!("{V1}/projects"),
            &user,
            json!({"name": "One too many"}),
        )
        .await;
    refused.expect_error(403, "feature_limit_reached");
    assert_eq!(refused.body["feature"], "projects");
    assert_eq!(refused.body["limit"], 5);
    assert!(refused.body["upgrade_url"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://")));
    assert_eq!(events(&app).await, before);
    app.delete(&format!("{V1}/projects/{}", projects[0]), &user)
        .await
        .expect(204);
    create(&app, &user, "projects", json!({"name": "Fits again"})).await;

    // A read-only key reads but cannot write or delete.
    let key = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "reader", "scopes": ["projects:read"]}),
        )
        .await;
    key.expect(201);
    let key = key.body["data"]["key"].as_str().expect("key").to_string();
    let read = app
        .call("GET", &format!("{V1}/projects"), Some(&key), None, &[])
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["data"][0]["name"], "Fits again");
    app.call(
        "POST",
        &format!("{V1}/projects"),
        Some(&key),
        Some(json!({"name": "x"})),
        &[],
    )
    .await
    .expect_error(403, "access_denied");
    app.call(
        "DELETE",
        &format!("{V1}/projects/{}", projects[1]),
        Some(&key),
        None,
        &[],
    )
    .await
    .expect_error(403, "access_denied");
    app.call("GET", &format!("{V1}/tasks"), Some(&key), None, &[])
        .await
        .expect_error(403, "access_denied");
    // A key-created item names the key as its creator.
    let writer = app
        .post(
            &format!("{V1}/api-keys"),
            &user,
            json!({"name": "writer", "scopes": ["documents:*"]}),
        )
        .await;
    let writer_id = writer.body["data"]["id"].as_str().expect("id").to_string();
    let writer = writer.body["data"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let doc = app
        .call(
            "POST",
            &format!("{V1}/documents"),
            Some(&writer),
            Some(json!({"title": "By a key"})),
            &[],
        )
        .await;
    doc.expect(201);
    assert_eq!(
        doc.body["data"]["created_by"],
        json!({"type": "api_key", "id": writer_id, "name": "writer"})
    );
    app.stop().await;
}

#[tokio::test]
async fn reused_totals_follow_every_write() {
    let app = TestApp::start().await;
    let user = app.signup("totals@example.com", "Totals").await;
    let mut ids_made = Vec::new();
    for n in 0..3 {
        ids_made.push(id(&create(
            &app,
            &user,
            "projects",
            json!({"name": format!("Count {n}")}),
        )
        .await));
    }
    let total = |response: &Response| response.body["meta"]["total"].as_i64().expect("total");
    assert_eq!(
        total(&list(&app, &user, "projects", "search=count").await),
        3
    );
    assert!(
        !app.runtime.state.counts.is_empty(),
        "the total was kept for reuse"
    );
    // Another page of the same query reuses it, and still answers correctly.
    let second = list(
        &app,
        &user,
        "projects",
        "search=count&per_page=2&page=2&sort=name",
    )
    .await;
    assert_eq!((total(&second), ids(&second).len()), (3, 1));
    // Every kind of write moves it: create, change in and out of a filter, delete.
    create(&app, &user, "projects", json!({"name": "Count 3"})).await;
    assert_eq!(
        total(&list(&app, &user, "projects", "search=count").await),
        4
    );
    assert_eq!(
        total(&list(&app, &user, "projects", "status=archived").await),
        0
    );
    app.patch(
        &format!("{V1}/projects/{}", ids_made[0]),
        &user,
        json!({"status": "archived"}),
    )
    .await
    .expect(200);
    assert_eq!(
        total(&list(&app, &user, "projects", "status=archived").await),
        1
    );
    app.delete(&format!("{V1}/projects/{}", ids_made[1]), &user)
        .await
        .expect(204);
    assert_eq!(
        total(&list(&app, &user, "projects", "search=count").await),
        3
    );
    // Past the last page the total is still right.
    let beyond = list(&app, &user, "projects", "search=count&page=9").await;
    assert_eq!((total(&beyond), ids(&beyond).len()), (3, 0));
    app.stop().await;
}

/// A batch mixing creations, changes and deletions of several records applies in log
/// order, however the projection groups its statements.
#[tokio::test]
async fn a_mixed_batch_projects_in_log_order() {
    let app = TestApp::start().await;
    let user = app.signup("batch@example.com", "Batch").await;
    let created = |name: &str| {
        json!({"Created": {"workspace_id": user.workspace_id, "created_by": {"type": "user", "id": user.user_id},
                           "fields": {"name": name, "description": null, "status": "active", "owner_id": null, "tags": []}}})
    };
    let updated = json!({"Updated": {"workspace_id": user.workspace_id, "changed": ["name"],
        "fields": {"name": "A renamed", "description": null, "status": "archived", "owner_id": null, "tags": ["x"]}}});
    let deleted = json!({"Deleted": {"workspace_id": user.workspace_id}});
    // One transaction, so one batch: A and B created, A changed, B deleted, C created.
    let rows = [
        ("proj_a", 1, "ProjectCreated", created("A")),
        ("proj_b", 1, "ProjectCreated", created("B")),
        ("proj_a", 2, "ProjectUpdated", updated),
        ("proj_b", 2, "ProjectDeleted", deleted),
        ("proj_c", 1, "ProjectCreated", created("C")),
    ];
    let mut tx = app.pool().begin().await.expect("begin");
    for (id, sequence, event_type, payload) in rows {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ('Project', $1, $2, $3, '1.0', $4, '{}')",
        )
        .bind(id)
        .bind(sequence as i64)
        .bind(event_type)
        .bind(payload)
        .execute(&mut *tx)
        .await
        .expect("append");
    }
    tx.commit().await.expect("commit");
    app.runtime.state.subscriptions.appended();
    let (last, _) = pulsar_projections::log::position_of_latest(app.pool(), "Project", "proj_c")
        .await
        .expect("position")
        .expect("appended");
    assert!(
        app.runtime
            .state
            .subscriptions
            .wait_for(&["projects"], last, std::time::Duration::from_secs(10))
            .await
    );
    let all = list(&app, &user, "projects", "sort=name").await;
    assert_eq!(ids(&all), vec!["proj_a", "proj_c"]);
    assert_eq!(all.body["data"][0]["name"], "A renamed");
    assert_eq!(all.body["data"][0]["status"], "archived");
    assert_eq!(all.body["data"][0]["version"], 2);
    assert_eq!(all.body["data"][1]["created_by"]["name"], "Test User");
    let count: i64 = sqlx::query_scalar(
        "SELECT count FROM workspace_record_counts WHERE workspace_id = $1 AND feature = 'projects'",
    )
    .bind(&user.workspace_id)
    .fetch_one(app.pool())
    .await
    .expect("count");
    assert_eq!(count, 2);
    app.stop().await;
}

/// The same list contract on every collection: page and links, sort both ways, sparse
/// fields, search, time ranges, and the item lifecycle, checked against the rows.
#[tokio::test]
async fn every_collection_honours_the_list_contract() {
    let app = TestApp::start().await;
    let user = app.signup("contract@example.com", "Contract").await;
    let project = id(&create(&app, &user, "projects", json!({"name": "Holder"})).await);
    for (collection, field) in [
        ("projects", "name"),
        ("tasks", "title"),
        ("contacts", "name"),
        ("companies", "name"),
        ("deals", "name"),
        ("documents", "title"),
    ] {
        let body = |value: &str| {
            let mut body = json!({ field: value });
            if collection == "tasks" {
                body["project_id"] = json!(project);
            }
            body
        };
        let mut made = Vec::new();
        for value in ["Alpha item", "Bravo item", "Charlie item"] {
            made.push(create(&app, &user, collection, body(value)).await);
        }
        let (alpha, bravo, charlie) = (id(&made[0]), id(&made[1]), id(&made[2]));
        let q = |query: String| {
            let (app, user) = (&app, &user);
            async move { list(app, user, collection, &query).await }
        };
        let scoped = |query: &str| format!("search=item&{query}");

        let page = q(scoped(&format!("sort={field}&per_page=2&page=2"))).await;
        assert_eq!(ids(&page), vec![charlie.clone()], "{collection}");
        assert_eq!(page.body["meta"]["total"], 3, "{collection}");
        assert_eq!(page.body["meta"]["last_page"], 2, "{collection}");
        assert!(page.body["links"]["prev"]
            .as_str()
            .is_some_and(|l| l.contains("page=1")));

        let sparse = q(scoped(&format!("sort=-{field}&fields=id,{field}"))).await;
        assert_eq!(
            ids(&sparse),
            vec![charlie.clone(), bravo.clone(), alpha.clone()],
            "{collection}"
        );
        let keys: Vec<&String> = sparse.body["data"][0]
            .as_object()
            .expect("item")
            .keys()
            .collect();
        assert_eq!(keys.len(), 2, "{collection}: {keys:?}");

        assert_eq!(
            ids(&q("search=bravo".into()).await),
            vec![bravo.clone()],
            "{collection}"
        );
        let after = made[0]["created_at"]
            .as_str()
            .expect("created_at")
            .replace(':', "%3A");
        assert_eq!(
            ids(&q(scoped(&format!("created_after={after}&sort={field}"))).await),
            vec![bravo.clone(), charlie.clone()],
            "{collection}"
        );

        let path = format!("{V1}/{collection}/{alpha}");
        let patched = app
            .patch(&path, &user, json!({ field: "Alpha item renamed" }))
            .await;
        patched.expect(200);
        let since = made[2]["updated_at"]
            .as_str()
            .expect("updated_at")
            .replace(':', "%3A");
        assert_eq!(
            ids(&q(scoped(&format!("updated_after={since}"))).await),
            vec![alpha.clone()],
            "{collection}"
        );
        let got = app.get(&path, &user).await;
        got.expect(200);
        assert_eq!(got.body["data"][field], "Alpha item renamed");
        assert_eq!(got.header("etag"), Some("\"2\""), "{collection}");

        app.delete(&format!("{V1}/{collection}/{bravo}"), &user)
            .await
            .expect(204);
        app.get(&format!("{V1}/{collection}/{bravo}"), &user)
            .await
            .expect_error(404, "not_found");
        assert_eq!(
            ids(&q(scoped(&format!("sort={field}"))).await),
            vec![alpha, charlie],
            "{collection}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_write_whose_read_model_is_behind_answers_from_the_event_store() {
    let app = TestApp::start().await;
    let user = app.signup("behind@data.example", "Behind").await;
    let impatient = pulsar_api::Config {
        consistency_timeout: std::time::Duration::from_millis(100),
        ..pulsar_tests::test_config()
    };
    let node = app
        .another_process_with(impatient, pulsar_api::runtime::Role::Api)
        .await;
    // No projector runs any more: every read-your-writes wait times out.
    let TestApp { db, runtime, .. } = app;
    runtime.stop().await;

    let created = node
        .call(
            "POST",
            &format!("{V1}/projects"),
            Some(&user.token),
            Some(json!({"name": "Lagging", "tags": ["x"]})),
            &[],
        )
        .await;
    created.expect(201);
    let item = &created.body["data"];
    assert_eq!(item["name"], "Lagging");
    assert_eq!(item["tags"], json!(["x"]));
    assert_eq!(item["version"], 1);
    assert_eq!(item["workspace_id"], user.workspace_id.as_str());
    let id = item["id"].as_str().expect("id");
    let updated = node
        .call(
            "PATCH",
            &format!("{V1}/projects/{id}"),
            Some(&user.token),
            Some(json!({"name": "Caught"})),
            &[],
        )
        .await;
    updated.expect(200);
    assert_eq!(updated.body["data"]["name"], "Caught");
    assert_eq!(
        updated.body["data"]["version"], 2,
        "never the version before the write"
    );
    assert_eq!(updated.header("etag"), Some("\"2\""));
    // The answers came from the store: the read model never saw the project.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(rows, 0);

    // An API key's secret is shown once: a key issued while the read model is behind
    // must still reach its caller, and work at once.
    let issued = node
        .call(
            "POST",
            &format!("{V1}/api-keys"),
            Some(&user.token),
            Some(json!({"name": "ci", "scopes": ["projects:read"]})),
            &[],
        )
        .await;
    issued.expect(201);
    let key_id = issued.body["data"]["id"].as_str().expect("id").to_string();
    let secret = issued.body["data"]["key"]
        .as_str()
        .expect("the secret")
        .to_string();
    assert_eq!(issued.body["data"]["name"], "ci");
    assert_eq!(issued.body["data"]["status"], "active");
    // The node's own key table (in memory, no projector needed) learns of it within
    // moments; here the read-your-writes wait gave up after 100 ms.
    let mut used = node
        .call("GET", &format!("{V1}/projects"), Some(&secret), None, &[])
        .await;
    for _ in 0..100 {
        if used.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        used = node
            .call("GET", &format!("{V1}/projects"), Some(&secret), None, &[])
            .await;
    }
    used.expect(200);
    let renamed = node
        .call(
            "PATCH",
            &format!("{V1}/api-keys/{key_id}"),
            Some(&user.token),
            Some(json!({"name": "ci 2"})),
            &[],
        )
        .await;
    renamed.expect(200);
    assert_eq!(renamed.body["data"]["name"], "ci 2");
    let rotated = node
        .call(
            "POST",
            &format!("{V1}/api-keys/{key_id}/rotate"),
            Some(&user.token),
            Some(json!({"grace_period_hours": 1})),
            &[],
        )
        .await;
    assert!(
        rotated.status == 200 || rotated.status == 201,
        "{}",
        rotated.text
    );
    assert!(rotated.body["data"]["key"].is_string(), "{}", rotated.text);
    assert_eq!(rotated.body["data"]["name"], "ci 2");

    // So is a webhook endpoint's signing secret.
    let endpoint = node
        .call(
            "POST",
            &format!("{V1}/webhooks"),
            Some(&user.token),
            Some(json!({"url": "http://127.0.0.1:9/hooks", "events": ["projects.*"]})),
            &[],
        )
        .await;
    endpoint.expect(201);
    assert!(endpoint.body["data"]["secret"]
        .as_str()
        .is_some_and(|s| s.starts_with("whsec_")));
    let endpoint_id = endpoint.body["data"]["id"].as_str().expect("id");
    let changed = node
        .call(
            "PATCH",
            &format!("{V1}/webhooks/{endpoint_id}"),
            Some(&user.token),
            Some(json!({"description": "behind"})),
            &[],
        )
        .await;
    changed.expect(200);
    assert_eq!(changed.body["data"]["description"], "behind");
    node.stop().await;
}
