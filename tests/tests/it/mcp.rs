//! The MCP server at `/api/mcp` and its REST facade: the official Python client at 1.x
//! and 2.x against a served Pulsar, the scopes an agent's key carries, every transport
//! rule, and a write through MCP compared with the same write through REST.

use std::collections::BTreeSet;
use std::time::Duration;

use pulsar_tests::mcp::{drive, Mode};
use pulsar_tests::{TestApp, User};
use serde_json::{json, Value};

const MCP: &str = "/api/mcp";

/// A key of `user`'s workspace with `scopes`: (id, secret).
async fn key(app: &TestApp, user: &User, scopes: &[&str]) -> (String, String) {
    let response = app
        .post(
            "/api/v1/api-keys",
            user,
            json!({"name": "agent", "scopes": scopes}),
        )
        .await;
    response.expect(201);
    let data = &response.body["data"];
    (
        data["id"].as_str().expect("id").into(),
        data["key"].as_str().expect("key").into(),
    )
}

/// Every tool an unrestricted key sees.
fn all_tools() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["projects", "tasks", "contacts", "companies", "deals"]
        .iter()
        .flat_map(|c| ["list", "get", "create", "update"].map(|v| format!("{c}_{v}")))
        .collect();
    for name in [
        "documents_get",
        "documents_search",
        "workspace_summary",
        "usage_summary",
    ] {
        names.insert(name.into());
    }
    names
}

fn tool_names(listed: &Value) -> BTreeSet<String> {
    listed["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name").to_string())
        .collect()
}

/// A tool call's step result, asserting it succeeded and matched its output schema.
#[track_caller]
fn succeeded<'a>(step: &'a Value, what: &str) -> &'a Value {
    assert!(step.get("exception").is_none(), "{what}: {step}");
    assert_eq!(step["result"]["isError"], false, "{what}: {step}");
    assert_eq!(step["schema_valid"], true, "{what}: {step}");
    assert_eq!(
        step["text_matches"], true,
        "{what}: the text block must repeat the structured result: {step}"
    );
    &step["result"]["structuredContent"]
}

#[track_caller]
fn tool_error(step: &Value, what: &str, code: &str) {
    assert_eq!(step["result"]["isError"], true, "{what}: {step}");
    let text = step["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with(code), "{what}: expected `{code}`: {step}");
}

#[tokio::test]
async fn the_python_client_at_1x_and_2x_lists_calls_reads_and_prompts() {
    let app = TestApp::start().await;
    let user = app.signup("agent@mcp.example", "Agents").await;
    let (_, secret) = key(
        &app,
        &user,
        &[
            "projects:*",
            "tasks:*",
            "crm:*",
            "documents:*",
            "workspaces:read",
            "entitlements:read",
            "usage:read",
        ],
    )
    .await;
    let project = app
        .created_id(
            "/api/v1/projects",
            &user,
            json!({"name": "Apollo", "tags": ["space"]}),
        )
        .await;
    let document = app
        .created_id(
            "/api/v1/documents",
            &user,
            json!({"title": "Runbook", "body": "Restart the flux capacitor weekly."}),
        )
        .await;
    let task = app
        .created_id(
            "/api/v1/tasks",
            &user,
            json!({"project_id": project, "title": "Fuel"}),
        )
        .await;
    let contact = app
        .created_id("/api/v1/contacts", &user, json!({"name": "Ada"}))
        .await;
    let company = app
        .created_id("/api/v1/companies", &user, json!({"name": "Engines Ltd"}))
        .await;
    let deal = app
        .created_id(
            "/api/v1/deals",
            &user,
            json!({"name": "Big one", "amount_cents": 100}),
        )
        .await;
    // Every other tool: create, get and update of each collection (projects: update).
    let mut rest_of_tools = vec![
        json!({"op": "call", "name": "projects_update", "args": {"id": project, "description": "To the moon"}}),
    ];
    for (collection, id, create, change) in [
        (
            "tasks",
            &task,
            json!({"project_id": project, "title": "Launch"}),
            json!({"status": "done"}),
        ),
        (
            "contacts",
            &contact,
            json!({"name": "Grace", "email": "grace@example.com"}),
            json!({"phone": "+44 20 7946 0000"}),
        ),
        (
            "companies",
            &company,
            json!({"name": "Analytical"}),
            json!({"domain": "engines.example"}),
        ),
        (
            "deals",
            &deal,
            json!({"name": "Small one", "amount_cents": 5}),
            json!({"stage": "won"}),
        ),
    ] {
        let mut update = change;
        update["id"] = json!(id);
        rest_of_tools
            .push(json!({"op": "call", "name": format!("{collection}_create"), "args": create}));
        rest_of_tools
            .push(json!({"op": "call", "name": format!("{collection}_get"), "args": {"id": id}}));
        rest_of_tools
            .push(json!({"op": "call", "name": format!("{collection}_update"), "args": update}));
    }
    let base = pulsar_tests::bench::serve(app.router.clone()).await;
    let url = format!("{base}{MCP}");

    for mode in Mode::ALL {
        let created_name = format!("Made by {mode:?}");
        let mut plan = json!([
            {"op": "list_tools"},
            {"op": "call", "name": "projects_list", "args": {"sort": "name"}},
            {"op": "call", "name": "projects_get", "args": {"id": project}},
            {"op": "call", "name": "projects.get", "args": {"id": project}},
            {"op": "call", "name": "projects_create", "args": {"name": created_name, "tags": ["mcp"]}},
            {"op": "call", "name": "tasks_list", "args": {}},
            {"op": "call", "name": "contacts_list", "args": {}},
            {"op": "call", "name": "companies_list", "args": {}},
            {"op": "call", "name": "deals_list", "args": {}},
            {"op": "call", "name": "documents_search", "args": {"query": "flux"}},
            {"op": "call", "name": "documents_get", "args": {"id": document}},
            {"op": "call", "name": "workspace_summary", "args": {}},
            {"op": "call", "name": "usage_summary", "args": {}},
            {"op": "call", "name": "projects_get", "args": {"id": "proj_01J00000000000000000000000"}},
            {"op": "call", "name": "projects_create", "args": {"name": ""}},
            {"op": "list_resources"},
            {"op": "list_templates"},
            {"op": "read", "uri": "pulsar://workspace"},
            {"op": "read", "uri": format!("pulsar://documents/{document}")},
            {"op": "list_prompts"},
            {"op": "prompt", "name": "summarize_project", "args": {"project_id": project}},
        ]);
        let first_of_the_rest = plan.as_array().map_or(0, Vec::len);
        plan.as_array_mut()
            .expect("plan")
            .extend(rest_of_tools.iter().cloned());
        let out = drive(mode, &url, &secret, &user.workspace_id, &plan).await;
        let what = format!("{mode:?}");
        let expected_version = match mode {
            Mode::V2Auto => "2026-07-28",
            _ => "2025-11-25",
        };
        assert_eq!(out["protocol_version"], expected_version, "{what}: {out}");
        let r = out["results"].as_array().expect("results");

        // 24 tools over two pages, each with schemas and annotations.
        assert_eq!(tool_names(&r[0]), all_tools(), "{what}");
        for tool in r[0]["tools"].as_array().expect("tools") {
            assert_eq!(tool["inputSchema"]["type"], "object", "{tool}");
            assert_eq!(tool["outputSchema"]["type"], "object", "{tool}");
            let read_only = tool["annotations"]["readOnlyHint"]
                .as_bool()
                .expect("readOnlyHint");
            let name = tool["name"].as_str().expect("name");
            assert_eq!(
                read_only,
                !(name.ends_with("_create") || name.ends_with("_update")),
                "{tool}"
            );
        }

        let list = succeeded(&r[1], "projects_list");
        assert!(list["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|p| p["id"] == project.as_str()));
        assert_eq!(succeeded(&r[2], "projects_get")["name"], "Apollo");
        assert_eq!(succeeded(&r[3], "projects.get")["id"], project.as_str());
        let created = succeeded(&r[4], "projects_create");
        assert_eq!(created["name"], created_name.as_str());
        // The write is real: REST sees it.
        let id = created["id"].as_str().expect("id");
        let rest = app.get(&format!("/api/v1/projects/{id}"), &user).await;
        rest.expect(200);
        assert_eq!(rest.body["data"]["tags"], json!(["mcp"]));
        for (i, name) in [
            (5, "tasks_list"),
            (6, "contacts_list"),
            (7, "companies_list"),
            (8, "deals_list"),
        ] {
            succeeded(&r[i], name);
        }
        let found = succeeded(&r[9], "documents_search");
        assert_eq!(found["data"][0]["id"], document.as_str());
        assert_eq!(succeeded(&r[10], "documents_get")["title"], "Runbook");
        let summary = succeeded(&r[11], "workspace_summary");
        assert_eq!(summary["workspace"]["id"], user.workspace_id.as_str());
        succeeded(&r[12], "usage_summary");
        // Business failures are tool errors, not protocol errors.
        tool_error(&r[13], "a missing project", "not_found");
        tool_error(&r[14], "an empty name", "validation_failed");

        let uris: Vec<&str> = r[15]["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|x| x["uri"].as_str().expect("uri"))
            .collect();
        assert_eq!(uris[0], "pulsar://workspace", "{what}");
        assert!(
            uris.contains(&format!("pulsar://documents/{document}").as_str()),
            "{uris:?}"
        );
        let templates = r[16]["templates"].as_array().expect("templates");
        assert!(
            templates
                .iter()
                .any(|t| t["uriTemplate"] == "pulsar://documents/{id}"),
            "{templates:?}"
        );
        let workspace: Value = serde_json::from_str(
            r[17]["result"]["contents"][0]["text"]
                .as_str()
                .expect("workspace text"),
        )
        .expect("workspace JSON");
        assert_eq!(workspace["workspace"]["id"], user.workspace_id.as_str());
        let doc = &r[18]["result"]["contents"][0];
        assert_eq!(doc["mimeType"], "text/markdown");
        assert!(doc["text"]
            .as_str()
            .expect("text")
            .contains("flux capacitor"));
        let prompts = r[19]["prompts"].as_array().expect("prompts");
        assert!(prompts.iter().any(|p| p["name"] == "summarize_project"));
        let message = r[20]["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: prompt: {}", r[20]));
        assert!(message.contains("Apollo"), "{message}");

        // Every tool was called, and each result matched its output schema.
        let called: BTreeSet<String> = plan
            .as_array()
            .expect("plan")
            .iter()
            .filter(|step| step["op"] == "call")
            .filter_map(|step| step["name"].as_str())
            .filter(|name| name.contains('_'))
            .map(String::from)
            .collect();
        assert_eq!(called, all_tools());
        for (step, result) in plan
            .as_array()
            .expect("plan")
            .iter()
            .zip(r)
            .skip(first_of_the_rest)
        {
            succeeded(result, step["name"].as_str().expect("name"));
        }
    }
    let done = app.get(&format!("/api/v1/tasks/{task}"), &user).await;
    assert_eq!(done.body["data"]["status"], "done");
}

#[tokio::test]
async fn an_agents_key_sees_and_does_only_what_its_scopes_allow() {
    let app = TestApp::start().await;
    let user = app.signup("scopes@mcp.example", "Scoped").await;
    let other = app.signup("other@mcp.example", "Other").await;
    let project = app
        .created_id("/api/v1/projects", &user, json!({"name": "Secret plan"}))
        .await;
    let document = app
        .created_id(
            "/api/v1/documents",
            &user,
            json!({"title": "Secret", "body": "x"}),
        )
        .await;
    let base = pulsar_tests::bench::serve(app.router.clone()).await;
    let url = format!("{base}{MCP}");

    // projects:read: the read tools of projects only; a write is refused.
    let (_, reader) = key(&app, &user, &["projects:read"]).await;
    for mode in [Mode::V1, Mode::V2Auto] {
        let plan = json!([
            {"op": "list_tools"},
            {"op": "call", "name": "projects_create", "args": {"name": "Nope"}},
            {"op": "call", "name": "projects_get", "args": {"id": project}},
            {"op": "list_prompts"},
            {"op": "read", "uri": format!("pulsar://documents/{document}")},
        ]);
        let out = drive(mode, &url, &reader, &user.workspace_id, &plan).await;
        let r = &out["results"];
        assert_eq!(
            tool_names(&r[0]),
            BTreeSet::from(["projects_get".to_string(), "projects_list".to_string()]),
            "{mode:?}"
        );
        tool_error(
            &r[1],
            "projects_create without projects:write",
            "access_denied",
        );
        succeeded(&r[2], "projects_get");
        assert!(r[3]["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .any(|p| p["name"] == "summarize_project"));
        assert!(
            r[4]["exception"]
                .as_str()
                .is_some_and(|e| e.contains("documents:read")),
            "a document without documents:read is refused, naming the scope: {}",
            r[4]
        );
    }
    let nope: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE name = 'Nope'")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert_eq!(nope, 0, "the refused create wrote nothing");

    // Another workspace's key sees nothing of this one.
    let (_, stranger) = key(&app, &other, &["*"]).await;
    let plan = json!([
        {"op": "call", "name": "projects_get", "args": {"id": project}},
        {"op": "call", "name": "projects_list", "args": {}},
        {"op": "list_resources"},
        {"op": "read", "uri": format!("pulsar://documents/{document}")},
        {"op": "call", "name": "projects_update", "args": {"id": project, "name": "Hijacked"}},
    ]);
    let out = drive(Mode::V2Auto, &url, &stranger, &other.workspace_id, &plan).await;
    let r = &out["results"];
    tool_error(&r[0], "another workspace's project", "not_found");
    assert_eq!(succeeded(&r[1], "projects_list")["data"], json!([]));
    let uris: Vec<&Value> = r[2]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|x| &x["uri"])
        .collect();
    assert_eq!(
        uris,
        [&json!("pulsar://workspace")],
        "only its own workspace"
    );
    assert!(
        r[3]["exception"]
            .as_str()
            .is_some_and(|e| e.to_lowercase().contains("not found")),
        "another workspace's document is not found: {}",
        r[3]
    );
    tool_error(&r[4], "another workspace's update", "not_found");
    // Naming this workspace with the stranger's key is refused outright.
    let denied = app
        .call(
            "POST",
            MCP,
            Some(&stranger),
            Some(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})),
            &[("x-workspace-id", &user.workspace_id)],
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.text);
    assert_eq!(
        app.get(&format!("/api/v1/projects/{project}"), &user)
            .await
            .body["data"]["name"],
        "Secret plan"
    );

    // A revoked key is refused at once, on this node and another.
    let (id, revoked) = key(&app, &user, &["projects:read"]).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    app.call("POST", MCP, Some(&revoked), Some(list.clone()), &[])
        .await
        .expect(200);
    let second = app.another_process(pulsar_api::runtime::Role::Api).await;
    app.delete(&format!("/api/v1/api-keys/{id}"), &user)
        .await
        .expect(204);
    let refused = app
        .call("POST", MCP, Some(&revoked), Some(list.clone()), &[])
        .await;
    refused.expect_error(401, "unauthorized");
    assert!(refused
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Bearer")));
    // The other node learns of it by notification (the REST guarantee): within seconds.
    let mut refused_there = false;
    for _ in 0..100 {
        if second
            .call("POST", MCP, Some(&revoked), Some(list.clone()), &[])
            .await
            .status
            == 401
        {
            refused_there = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused_there, "the second node still accepts a revoked key");
    second.stop().await;
}

/// A raw JSON-RPC call through the router.
async fn rpc(
    app: &TestApp,
    token: Option<&str>,
    body: Value,
    headers: &[(&str, &str)],
) -> pulsar_tests::Response {
    app.call("POST", MCP, token, Some(body), headers).await
}

fn modern_meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    })
}

#[tokio::test]
async fn every_transport_rule_has_its_answer() {
    let app = TestApp::start().await;
    let user = app.signup("rules@mcp.example", "Rules").await;
    let token = user.token.as_str();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});

    // initialize negotiates a served handshake version; an unknown one gets the newest.
    let ok = rpc(&app, Some(token), init.clone(), &[]).await;
    ok.expect(200);
    assert_eq!(ok.body["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(ok.body["result"]["serverInfo"]["name"], "pulsar");
    let mut future = init.clone();
    future["params"]["protocolVersion"] = json!("2099-01-01");
    assert_eq!(
        rpc(&app, Some(token), future, &[]).await.body["result"]["protocolVersion"],
        "2025-11-25"
    );
    // Behind the REST middleware: rate-limit headers and a request id.
    assert!(ok.header("x-ratelimit-limit").is_some() && ok.header("x-request-id").is_some());

    // Notifications: 202, no body.
    let note = app
        .call(
            "POST",
            MCP,
            Some(token),
            Some(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})),
            &[],
        )
        .await;
    assert_eq!(note.status, 202);
    assert!(note.text.is_empty(), "{}", note.text);

    // GET and DELETE: 405 with Allow: POST.
    for method in ["GET", "DELETE"] {
        let response = app.call(method, MCP, Some(token), None, &[]).await;
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("POST"), "{method}");
    }

    // An unsupported MCP-Protocol-Version: 400.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let bad = rpc(
        &app,
        Some(token),
        list.clone(),
        &[("mcp-protocol-version", "2024-01-01")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.body["error"]["code"], -32600);
    for served in ["2025-06-18", "2025-11-25"] {
        rpc(
            &app,
            Some(token),
            list.clone(),
            &[("mcp-protocol-version", served)],
        )
        .await
        .expect(200);
    }

    // A disallowed Origin: 403; the server's own origin passes.
    let foreign = rpc(
        &app,
        Some(token),
        list.clone(),
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    let own = rpc(
        &app,
        Some(token),
        list.clone(),
        &[("origin", "http://pulsar.local"), ("host", "pulsar.local")],
    )
    .await;
    own.expect(200);

    // Malformed JSON: -32700.
    let request = axum::http::Request::post(MCP)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from("{\"jsonrpc\": \"2.0\", \"id\": 1,"))
        .expect("request");
    let parse = app.send(request).await;
    assert_eq!(parse.status, 400);
    assert_eq!(parse.body["error"]["code"], -32700, "{}", parse.text);

    // What REST bodies may not hold, MCP arguments may not either: a NUL character (which
    // PostgreSQL cannot store) or a member named twice.
    for raw in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"projects_create","arguments":{"name":"a\u0000b"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"projects_create","arguments":{"name":"a","name":"b"}}}"#,
    ] {
        let request = axum::http::Request::post(MCP)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(raw))
            .expect("request");
        let refused = app.send(request).await;
        assert_eq!(refused.status, 400, "{raw}");
        assert_eq!(
            refused.body["error"]["code"], -32700,
            "{raw}: {}",
            refused.text
        );
    }
    let projects = app.get("/api/v1/projects", &user).await;
    assert_eq!(projects.body["meta"]["total"], 0, "nothing was created");

    // A batch or a message that is not a request: -32600.
    let batch = rpc(&app, Some(token), json!([list.clone()]), &[]).await;
    assert_eq!(batch.body["error"]["code"], -32600, "{}", batch.text);

    // Unknown method: -32601 (handshake: HTTP 200; 2026-07-28: 404).
    let unknown = rpc(
        &app,
        Some(token),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/explode"}),
        &[],
    )
    .await;
    unknown.expect(200);
    assert_eq!(unknown.body["error"]["code"], -32601);
    assert_eq!(unknown.body["id"], 3);
    let modern_unknown = rpc(
        &app,
        Some(token),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/explode", "params": {"_meta": modern_meta()}}),
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/explode")],
    )
    .await;
    assert_eq!(modern_unknown.status, 404);
    assert_eq!(modern_unknown.body["error"]["code"], -32601);

    // Bad params: -32602.
    for params in [
        json!({}),
        json!({"name": 7}),
        json!({"name": "tools_nonexistent"}),
        json!({"name": "projects_list", "arguments": []}),
    ] {
        let response = rpc(
            &app,
            Some(token),
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": params}),
            &[],
        )
        .await;
        assert_eq!(
            response.body["error"]["code"], -32602,
            "{params}: {}",
            response.text
        );
    }
    let bad_cursor = rpc(
        &app,
        Some(token),
        json!({"jsonrpc": "2.0", "id": 6, "method": "tools/list", "params": {"cursor": "!!"}}),
        &[],
    )
    .await;
    assert_eq!(bad_cursor.body["error"]["code"], -32602);

    // Missing or bad credential: 401 with WWW-Authenticate: Bearer.
    for credential in [None, Some("psk_not_a_real_key"), Some("pst_forged")] {
        let response = rpc(&app, credential, list.clone(), &[]).await;
        assert_eq!(response.status, 401, "{credential:?}");
        assert!(
            response
                .header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{credential:?}: {:?}",
            response.headers
        );
    }

    // 2026-07-28: discover, per-request _meta, headers that must match the body.
    let discover = rpc(
        &app,
        Some(token),
        json!({"jsonrpc": "2.0", "id": 7, "method": "server/discover", "params": {"_meta": modern_meta()}}),
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "server/discover")],
    )
    .await;
    discover.expect(200);
    assert_eq!(
        discover.body["result"]["supportedVersions"][0],
        "2026-07-28"
    );
    assert_eq!(discover.body["result"]["resultType"], "complete");
    let call = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
        "params": {"name": "projects_list", "arguments": {}, "_meta": modern_meta()}});
    let good = rpc(
        &app,
        Some(token),
        call.clone(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "projects_list"),
        ],
    )
    .await;
    good.expect(200);
    assert_eq!(good.body["result"]["isError"], false, "{}", good.text);
    let mismatch = rpc(
        &app,
        Some(token),
        call.clone(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "tasks_list"),
        ],
    )
    .await;
    assert_eq!(mismatch.status, 400);
    assert_eq!(mismatch.body["error"]["code"], -32020);
    let mut old = call.clone();
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2030-01-01");
    let unsupported = rpc(
        &app,
        Some(token),
        old,
        &[
            ("mcp-protocol-version", "2030-01-01"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "projects_list"),
        ],
    )
    .await;
    assert_eq!(unsupported.status, 400);
    assert_eq!(unsupported.body["error"]["code"], -32022);
    let mut no_capabilities = call.clone();
    no_capabilities["params"]["_meta"] =
        json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28"});
    let missing = rpc(
        &app,
        Some(token),
        no_capabilities,
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "projects_list"),
        ],
    )
    .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"]["code"], -32602);
    let modern_list = rpc(&app, Some(token),
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list", "params": {"_meta": modern_meta()}}),
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]).await;
    modern_list.expect(200);
    assert_eq!(
        modern_list.body["result"]["cacheScope"], "private",
        "what a caller sees depends on its scopes"
    );
    assert!(
        modern_list.body["result"]["nextCursor"].is_string(),
        "24 tools come in pages of 20"
    );

    // Stateless: another node answers without having seen an initialize.
    let second = app.another_process(pulsar_api::runtime::Role::Api).await;
    let there = second
        .call(
            "POST",
            MCP,
            Some(token),
            Some(list.clone()),
            &[("mcp-protocol-version", "2025-11-25")],
        )
        .await;
    there.expect(200);
    assert_eq!(
        there.body["result"]["tools"].as_array().map(Vec::len),
        Some(20)
    );
    second.stop().await;
}

/// `value` with `id` replaced and the members that name an instant or a position dropped,
/// so two writes of the same thing compare equal.
fn normalized(value: &Value, id: &str) -> Value {
    // `hash` and `log_index`: an audit entry's place in the log and its hash over all
    // of the event, ids included.
    const VOLATILE: [&str; 14] = [
        "id",
        "event_id",
        "created_at",
        "updated_at",
        "recorded_at",
        "timestamp",
        "position",
        "global_position",
        "leaf_index",
        "leaf_hash",
        "request_id",
        "sequence",
        "hash",
        "log_index",
    ];
    match value {
        Value::String(s) if s == id => json!("<id>"),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), normalized(v, id)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| normalized(v, id)).collect()),
        other => other.clone(),
    }
}

#[tokio::test]
async fn a_write_through_mcp_is_the_same_as_through_rest() {
    let app = TestApp::start().await;
    let receiver = pulsar_tests::receiver::Receiver::start().await;
    let user = app.signup("same@mcp.example", "Same").await;
    app.post(
        "/api/v1/webhooks",
        &user,
        json!({"url": receiver.url("/hooks"), "events": ["projects.created"]}),
    )
    .await
    .expect(201);
    let fields = json!({"name": "Twin", "description": "Made twice", "status": "active", "tags": ["a", "b"]});

    let rest = app.post("/api/v1/projects", &user, fields.clone()).await;
    rest.expect(201);
    let rest_id = rest.body["data"]["id"].as_str().expect("id").to_string();
    let mcp = rpc(
        &app,
        Some(&user.token),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
               "params": {"name": "projects_create", "arguments": fields}}),
        &[],
    )
    .await;
    mcp.expect(200);
    let structured = &mcp.body["result"]["structuredContent"];
    let mcp_id = structured["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", mcp.text))
        .to_string();
    // The answer: the same item.
    assert_eq!(
        normalized(structured, &mcp_id),
        normalized(&rest.body["data"], &rest_id)
    );

    // The event in the store: same type, payload and metadata.
    let pool = app.pool();
    let event = |id: String| async move {
        sqlx::query_as::<_, (String, Value, Value)>(
            "SELECT event_type, payload, metadata FROM events WHERE aggregate_id = $1 ORDER BY sequence",
        )
        .bind(&id)
        .fetch_all(pool)
        .await
        .expect("events")
        .into_iter()
        .map(|(t, p, m)| json!({"type": t, "payload": normalized(&p, &id), "metadata": normalized(&m, &id)}))
        .collect::<Vec<_>>()
    };
    let (rest_events, mcp_events) = (event(rest_id.clone()).await, event(mcp_id.clone()).await);
    assert_eq!(rest_events.len(), 1);
    assert_eq!(mcp_events, rest_events);

    // The read-model row.
    let row = |id: String| async move {
        let row: Value = sqlx::query_scalar("SELECT to_jsonb(p) FROM projects p WHERE id = $1")
            .bind(&id)
            .fetch_one(pool)
            .await
            .expect("row");
        normalized(&row, &id)
    };
    assert_eq!(row(mcp_id.clone()).await, row(rest_id.clone()).await);

    // The audit entry.
    let audit = |id: String| {
        let (app, user) = (&app, &user);
        async move {
            for _ in 0..100 {
                let response = app
                    .get(&format!("/api/v1/audit/events?aggregate_id={id}"), user)
                    .await;
                response.expect(200);
                if let Some(entries) = response.body["data"].as_array().filter(|e| !e.is_empty()) {
                    return normalized(&Value::Array(entries.clone()), &id);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("no audit entry for {id}");
        }
    };
    assert_eq!(audit(mcp_id.clone()).await, audit(rest_id.clone()).await);

    // The webhook delivery: same type and data.
    let got = receiver
        .wait_for("/hooks", 2, Duration::from_secs(15))
        .await;
    let body = |id: &str| {
        got.iter()
            .map(|r| r.json())
            .find(|b| b["data"]["id"] == id)
            .map(|b| normalized(&b, id))
            .unwrap_or_else(|| panic!("no delivery for {id}"))
    };
    assert_eq!(body(&mcp_id), body(&rest_id));
}

#[tokio::test]
async fn the_rest_facade_lists_calls_and_reads_through_the_same_registry() {
    let app = TestApp::start().await;
    let user = app.signup("facade@mcp.example", "Facade").await;
    let document = app
        .created_id(
            "/api/v1/documents",
            &user,
            json!({"title": "Guide", "body": "Hello"}),
        )
        .await;
    let (_, reader) = key(&app, &user, &["mcp:read", "projects:*", "documents:read"]).await;
    let (_, writer) = key(&app, &user, &["mcp:*", "projects:*"]).await;
    let (_, no_mcp) = key(&app, &user, &["projects:*"]).await;
    let get = |token: &str, path: &str| {
        let token = token.to_string();
        let path = format!("/api/v1{path}");
        let app = &app;
        async move { app.call("GET", &path, Some(&token), None, &[]).await }
    };

    let servers = get(&reader, "/mcp/servers").await;
    servers.expect(200);
    assert_eq!(servers.body["data"][0]["id"], "pulsar");
    assert_eq!(servers.body["data"][0]["url"], "/api/mcp");
    assert_eq!(
        servers.body["data"][0]["tool_count"], 6,
        "projects (4), documents_get and _search: {}",
        servers.text
    );
    get(&reader, "/mcp/servers/pulsar").await.expect(200);
    get(&reader, "/mcp/servers/other")
        .await
        .expect_error(404, "not_found");
    get(&no_mcp, "/mcp/servers")
        .await
        .expect_error(403, "access_denied");
    let tools = get(&reader, "/mcp/servers/pulsar/tools").await;
    tools.expect(200);
    let names: BTreeSet<&str> = tools.body["data"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    // The same set tools/list shows this key.
    let listed = rpc(
        &app,
        Some(&reader),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        &[],
    )
    .await;
    let listed: BTreeSet<&str> = listed.body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, listed);

    let call = |token: &str, body: Value| {
        let token = token.to_string();
        let app = &app;
        async move {
            app.call(
                "POST",
                "/api/v1/mcp/tools/call",
                Some(&token),
                Some(body),
                &[],
            )
            .await
        }
    };
    // Read tools need mcp:read; writes mcp:write.
    let listed = call(
        &reader,
        json!({"server": "pulsar", "tool": "projects.list", "arguments": {}}),
    )
    .await;
    listed.expect(200);
    assert_eq!(listed.body["data"]["tool"], "projects_list");
    assert_eq!(
        listed.body["data"]["structured_content"]["meta"]["total"],
        0
    );
    call(
        &reader,
        json!({"server": "pulsar", "tool": "projects_create", "arguments": {"name": "X"}}),
    )
    .await
    .expect_error(403, "access_denied");
    let made = call(
        &writer,
        json!({"server": "pulsar", "tool": "projects_create", "arguments": {"name": "Y"}}),
    )
    .await;
    made.expect(200);
    let id = made.body["data"]["structured_content"]["id"]
        .as_str()
        .expect("id");
    app.get(&format!("/api/v1/projects/{id}"), &user)
        .await
        .expect(200);
    // The use case's refusals are REST errors.
    call(
        &writer,
        json!({"server": "pulsar", "tool": "projects_create", "arguments": {"name": ""}}),
    )
    .await
    .expect_error(422, "validation_failed");
    call(&writer, json!({"server": "pulsar", "tool": "nope_list"}))
        .await
        .expect_error(404, "not_found");
    call(
        &writer,
        json!({"server": "elsewhere", "tool": "projects_list"}),
    )
    .await
    .expect_error(404, "not_found");
    call(
        &writer,
        json!({"server": "pulsar", "tool": "projects_list", "surprise": 1}),
    )
    .await
    .expect(422);
    call(
        &writer,
        json!({"server": "pulsar", "tool": "documents_get", "arguments": {"id": document}}),
    )
    .await
    .expect_error(403, "access_denied");

    let encoded = format!("pulsar%3A%2F%2Fdocuments%2F{document}");
    let read = get(&reader, &format!("/mcp/resources/{encoded}")).await;
    read.expect(200);
    assert_eq!(read.body["data"]["mime_type"], "text/markdown");
    assert!(read.body["data"]["text"]
        .as_str()
        .expect("text")
        .contains("Hello"));
    get(&writer, &format!("/mcp/resources/{encoded}"))
        .await
        .expect_error(403, "access_denied");
    get(
        &reader,
        "/mcp/resources/pulsar%3A%2F%2Fdocuments%2Fdoc_01J00000000000000000000000",
    )
    .await
    .expect_error(404, "not_found");
    get(&reader, "/mcp/resources/https%3A%2F%2Fexample.com")
        .await
        .expect_error(404, "not_found");
    get(&reader, "/mcp/servers?surprise=1")
        .await
        .expect_error(400, "bad_request");
}

#[tokio::test]
async fn mcp_calls_are_metered_like_rest_calls() {
    let app = TestApp::start().await;
    let user = app.signup("meter@mcp.example", "Metered").await;
    let (key_id, secret) = key(&app, &user, &["projects:read"]).await;
    let second = app.another_process(pulsar_api::runtime::Role::Api).await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "projects_list", "arguments": {}}});
    for _ in 0..3 {
        second
            .call("POST", MCP, Some(&secret), Some(list.clone()), &[])
            .await
            .expect(200);
    }
    app.call("GET", "/api/v1/projects", Some(&secret), None, &[])
        .await
        .expect(200);
    // The second process flushes its counts as it stops; this one's come with the next
    // flush (every few seconds).
    second.stop().await;
    let path = format!("/api/v1/usage?granularity=day&group_by=api_key&api_key_id={key_id}");
    let mut rows = Value::Null;
    for _ in 0..100 {
        rows = app.get(&path, &user).await.body["data"].clone();
        if rows[0]["count"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rows[0]["count"], 4,
        "three MCP calls and one REST call: {rows}"
    );
}

#[tokio::test]
async fn hostile_json_rpc_gets_answers_never_a_server_error() {
    // The OpenAPI-driven hostile sweep does not reach /api/mcp: this does, with a seeded
    // mix of tool names, argument shapes and values, URIs, prompts, cursors and headers.
    let app = TestApp::start().await;
    let user = app.signup("hostile@mcp.example", "Hostile").await;
    let project = app
        .created_id("/api/v1/projects", &user, json!({"name": "Target"}))
        .await;
    let tools = [
        "projects_list",
        "projects_get",
        "projects_create",
        "projects_update",
        "tasks_create",
        "tasks_update",
        "contacts_create",
        "deals_update",
        "documents_search",
        "documents_get",
        "workspace_summary",
        "usage_summary",
        "projects.create",
        "a.b.c",
        "",
        "nope",
    ];
    let values = [
        Value::Null,
        json!(1),
        json!(-1),
        json!(1e308),
        json!("x"),
        json!(""),
        json!("a".repeat(5_000)),
        json!([]),
        json!(vec![1; 500]),
        json!({}),
        json!({"a": {"b": []}}),
        json!(true),
        json!(project),
        json!("2026-13-45"),
        json!("-name,,"),
        json!("💥"),
    ];
    let names = [
        "id",
        "name",
        "title",
        "project_id",
        "status",
        "priority",
        "tags",
        "amount_cents",
        "sort",
        "page",
        "per_page",
        "search",
        "query",
        "tag",
        "created_after",
        "due_date",
        "stage",
        "zzz",
    ];
    let uris = [
        json!("pulsar://workspace"),
        json!("pulsar://documents/"),
        json!("pulsar://documents/../../etc"),
        json!("pulsar://tasks/task_x"),
        json!("pulsar://"),
        json!(5),
        Value::Null,
        json!(format!("pulsar://projects/{project}/x")),
        json!("pulsar://documents/doc_00000000000000000000000000000000"),
    ];
    let others = [
        json!({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}),
        json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": 7}),
        json!({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "dG9vbHM6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"cursor": "dG9vbHM6LTE"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "resources/list", "params": {"cursor": "cmVzb3VyY2VzOjQyOTQ5NjcyOTU"}}),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": [1]}),
        json!("x"),
        Value::Null,
    ];
    let headers: [&[(&str, &str)]; 4] = [
        &[],
        &[("mcp-protocol-version", "2025-06-18")],
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
        &[("mcp-protocol-version", "junk")],
    ];
    // A small LCG: the same sequence on every run.
    let mut seed: u64 = 7;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    for i in 0..400 {
        let body = match next(10) {
            0..=5 => {
                let mut arguments = serde_json::Map::new();
                for _ in 0..next(5) {
                    arguments.insert(
                        names[next(names.len())].into(),
                        values[next(values.len())].clone(),
                    );
                }
                let arguments = match next(6) {
                    0 => Value::Null,
                    1 => json!("x"),
                    _ => Value::Object(arguments),
                };
                json!({"jsonrpc": "2.0", "id": i, "method": "tools/call",
                       "params": {"name": tools[next(tools.len())], "arguments": arguments}})
            }
            6 | 7 => json!({"jsonrpc": "2.0", "id": i, "method": "resources/read",
                           "params": {"uri": uris[next(uris.len())]}}),
            8 => {
                let prompt = ["summarize_project", "triage_seo_issues", "x"][next(3)];
                let project_id = values[next(values.len())].clone();
                json!({"jsonrpc": "2.0", "id": i, "method": "prompts/get",
                       "params": {"name": prompt, "arguments": {"project_id": project_id}}})
            }
            _ => others[next(others.len())].clone(),
        };
        let response = rpc(
            &app,
            Some(&user.token),
            body.clone(),
            headers[next(headers.len())],
        )
        .await;
        assert!(
            matches!(response.status, 200 | 202 | 400 | 404),
            "{body}: {} {}",
            response.status,
            response.text
        );
        assert_ne!(
            response.body["error"]["code"], -32603,
            "{body}: {}",
            response.text
        );
        if response.status == 200 {
            assert_eq!(response.body["jsonrpc"], "2.0", "{body}: {}", response.text);
        }
    }
}
