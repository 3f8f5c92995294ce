//! A hostile client, generated from the OpenAPI document: for every operation, inputs
//! that are wrong in every way the document lets us derive (wrong types, nulls,
//! non-objects, deep nesting, oversized strings and arrays, NUL and lone surrogates,
//! repeated members, odd path ids and query values, repeated credentials), each sent by a
//! real HTTP client to the real server.
//!
//! Every answer must be a 4xx with the envelope (`request_id` equal to `X-Request-ID`,
//! `errors` on 422 only), nothing may be written (the event count stays put), and the
//! server must stay healthy. The sweep reads the document, so a new endpoint is swept
//! the moment it is documented, without editing this file.

use std::collections::BTreeMap;

use pulsar_tests::{bench, TestApp};
use regex::Regex;
use reqwest::{Client, Method};
use serde_json::{json, Value};

const V1: &str = "/api/v1";

/// One hostile request.
#[derive(Debug, Clone)]
struct Attempt {
    what: String,
    method: Method,
    /// Path and query, already encoded.
    target: String,
    /// Raw body text (sent as JSON unless `content_type` says otherwise).
    body: Option<String>,
    content_type: &'static str,
    /// Extra headers, in order (a name may repeat).
    headers: Vec<(&'static str, String)>,
    /// Whether to send the owner's credential.
    authenticated: bool,
}

struct Document<'a> {
    doc: &'a Value,
}

impl<'a> Document<'a> {
    /// Follows `$ref`s to the schema they name.
    fn resolve(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference.trim_start_matches('#');
                self.resolve(self.doc.pointer(pointer).unwrap_or(&Value::Null))
            }
            None => schema,
        }
    }

    /// The schema's own type, seen through `$ref`, `oneOf`/`anyOf` with `null`, and
    /// type lists; with whether `null` is allowed.
    fn kind(&self, schema: &'a Value) -> (String, bool, &'a Value) {
        let schema = self.resolve(schema);
        for key in ["oneOf", "anyOf"] {
            if let Some(members) = schema.get(key).and_then(Value::as_array) {
                let nullable = members
                    .iter()
                    .any(|m| self.resolve(m).get("type") == Some(&json!("null")));
                if let Some(member) = members
                    .iter()
                    .find(|m| self.resolve(m).get("type") != Some(&json!("null")))
                {
                    let (kind, inner_nullable, resolved) = self.kind(member);
                    return (kind, nullable || inner_nullable, resolved);
                }
            }
        }
        match schema.get("type") {
            Some(Value::String(kind)) => (kind.clone(), false, schema),
            Some(Value::Array(kinds)) => {
                let nullable = kinds.contains(&json!("null"));
                let kind = kinds
                    .iter()
                    .filter_map(Value::as_str)
                    .find(|k| *k != "null")
                    .unwrap_or("string");
                (kind.to_string(), nullable, schema)
            }
            _ if schema.get("enum").is_some() => ("string".into(), false, schema),
            _ => ("any".into(), true, schema),
        }
    }

    /// Every property a request body may have (across `oneOf` variants), with whether
    /// any variant requires it.
    fn properties(&self, schema: &'a Value) -> BTreeMap<String, (&'a Value, bool)> {
        let schema = self.resolve(schema);
        let mut out = BTreeMap::new();
        let variants: Vec<&Value> = match schema.get("oneOf").and_then(Value::as_array) {
            Some(variants) => variants.iter().map(|v| self.resolve(v)).collect(),
            None => vec![schema],
        };
        for variant in variants {
            let required: Vec<&str> = variant
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (name, property) in variant
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let entry = out.entry(name.clone()).or_insert((property, false));
                entry.1 |= required.contains(&name.as_str());
            }
        }
        out
    }
}

/// A query value most parameters cannot take: markup, empty list entries, quotes.
const ABSURD: &str = "<script>,,,'\"";

/// Whether a query `value` breaks the parameter's declared schema (so the server must
/// refuse it); free text that any value fits is not swept with it.
fn violates(schema: &Value, value: &str) -> bool {
    if let Some(pattern) = schema["pattern"].as_str() {
        return Regex::new(pattern).is_ok_and(|regex| !regex.is_match(value));
    }
    if let Some(values) = schema["enum"].as_array() {
        return !values.iter().any(|v| v == value);
    }
    match schema["type"].as_str() {
        Some("integer") => value.parse::<i64>().is_err(),
        Some("number") => value.parse::<f64>().is_err(),
        Some("boolean") => value != "true" && value != "false",
        _ => schema["format"] == "date-time",
    }
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A value no pattern of this API accepts where it is applied, chosen by trying.
fn breaks_pattern(pattern: &str) -> Option<String> {
    let regex = Regex::new(pattern).ok()?;
    ["\u{1}", " ", "x", "-", "0", "a@b"]
        .into_iter()
        .find(|candidate| !regex.is_match(candidate))
        .map(|candidate| json!(candidate).to_string())
}

/// Raw JSON texts that a property of this schema must refuse.
fn wrong_values(doc: &Document<'_>, property: &Value, required: bool) -> Vec<(String, String)> {
    let (kind, nullable, schema) = doc.kind(property);
    let number = |key: &str| schema.get(key).and_then(Value::as_i64);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, raw: String| out.push((what.to_string(), raw));
    if !nullable && (required || kind != "any") {
        add("null", "null".into());
    }
    match kind.as_str() {
        "string" => {
            add("a number", "12345".into());
            add("a boolean", "true".into());
            add("an object", "{}".into());
            add("an array", "[\"x\"]".into());
            add("NUL", "\"a\\u0000b\"".into());
            add("a lone surrogate", "\"a\\ud800b\"".into());
            let too_long = number("maxLength").map_or(70_000, |max| max as usize + 1);
            add(
                "an oversized string",
                json!("x".repeat(too_long)).to_string(),
            );
            if schema.get("enum").is_some() {
                add("an unknown value", "\"not-a-value\"".into());
            }
            if let Some(raw) = schema
                .get("pattern")
                .and_then(Value::as_str)
                .and_then(breaks_pattern)
            {
                add("a value off the pattern", raw);
            }
        }
        "integer" | "number" => {
            add("a string", "\"12\"".into());
            add("a boolean", "false".into());
            add("an array", "[1]".into());
            if kind == "integer" {
                add("a fraction", "1.5".into());
            }
            add("a huge number", "1e300".into());
            if let Some(min) = number("minimum") {
                add("below the minimum", (min - 1).to_string());
            }
            if let Some(max) = number("maximum") {
                add("above the maximum", (max + 1).to_string());
            }
        }
        "boolean" => {
            add("a string", "\"yes\"".into());
            add("a number", "1".into());
        }
        "array" => {
            add("a string", "\"x\"".into());
            add("an object", "{}".into());
            add("items of the wrong type", "[{}]".into());
            let too_many = number("maxItems").map_or(100_000, |max| max as usize + 1);
            let items: Vec<String> = (0..too_many).map(|i| format!("item{i}")).collect();
            add("an oversized array", json!(items).to_string());
            if number("maxItems").is_some() {
                // Repeats must not hide an oversized list.
                add(
                    "an oversized array of repeats",
                    json!(vec!["same"; too_many]).to_string(),
                );
            }
        }
        "object" => {
            add("a string", "\"x\"".into());
            add("an array", "[null, null]".into());
            add("an unknown member", "{\"x-unknown\": 1}".into());
        }
        _ => {}
    }
    out
}

/// Resolves path parameters left to right from the document's own collections: the
/// prefix before `{param}` is a list, whose first item names the id (its `param` key,
/// else `id`); an empty or undocumented list gives a well-formed id nobody holds.
async fn resolve_path(
    client: &Client,
    base: &str,
    token: &str,
    template: &str,
    lists: &[String],
) -> String {
    let mut path = String::new();
    for segment in template.trim_start_matches('/').split('/') {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            let mut id = "zz_00000000000000000000000000000000".to_string();
            if lists.contains(&template_of(&path, template)) {
                let list: Value = client
                    .get(format!("{base}{V1}{path}"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("json");
                if let Some(first) = list["data"].get(0) {
                    let found = first.get(name).or_else(|| first.get("id"));
                    if let Some(found) = found.and_then(Value::as_str) {
                        id = found.to_string();
                    }
                }
            }
            path.push('/');
            path.push_str(&id);
        } else {
            path.push('/');
            path.push_str(segment);
        }
    }
    path
}

/// The template of the concrete prefix `path` within `template` (same number of
/// segments), so it can be looked up among the documented lists.
fn template_of(path: &str, template: &str) -> String {
    let depth = path.split('/').count();
    template
        .split('/')
        .take(depth)
        .collect::<Vec<_>>()
        .join("/")
}

fn attempt(what: String, method: &Method, target: &str) -> Attempt {
    Attempt {
        what,
        method: method.clone(),
        target: target.to_string(),
        body: None,
        content_type: "application/json",
        headers: Vec::new(),
        authenticated: true,
    }
}

#[tokio::test]
async fn a_generated_hostile_sweep_gets_only_4xx_envelopes_and_writes_nothing() {
    let app = TestApp::start().await;
    let owner = app.signup("owner@sweep.example", "Sweep").await;
    let other = app.signup("other@sweep.example", "Elsewhere").await;
    // One of everything, so item routes reach their deepest checks.
    let id = |response: pulsar_tests::Response| {
        response.body["data"]["id"]
            .as_str()
            .expect("created")
            .to_string()
    };
    let project = id(app
        .post(&format!("{V1}/projects"), &owner, json!({"name": "P"}))
        .await);
    let company = id(app
        .post(&format!("{V1}/companies"), &owner, json!({"name": "C"}))
        .await);
    let contact = id(app
        .post(
            &format!("{V1}/contacts"),
            &owner,
            json!({"name": "K", "company_id": company}),
        )
        .await);
    app.post(
        &format!("{V1}/tasks"),
        &owner,
        json!({"project_id": project, "title": "T"}),
    )
    .await
    .expect(201);
    app.post(
        &format!("{V1}/deals"),
        &owner,
        json!({"name": "D", "company_id": company, "contact_id": contact}),
    )
    .await
    .expect(201);
    app.post(&format!("{V1}/documents"), &owner, json!({"title": "Doc"}))
        .await
        .expect(201);
    app.post(
        &format!("{V1}/api-keys"),
        &owner,
        json!({"name": "K", "scopes": ["*"]}),
    )
    .await
    .expect(201);
    app.post(
        &format!("{V1}/workspaces/{}/members", owner.workspace_id),
        &owner,
        json!({"email": other.email, "role": "viewer"}),
    )
    .await
    .expect(201);

    let base = bench::serve(app.router.clone()).await;
    let client = Client::new();
    let doc: Value = client
        .get(format!("{base}{V1}/openapi.json"))
        .send()
        .await
        .expect("document")
        .json()
        .await
        .expect("json");
    let document = Document { doc: &doc };
    let paths = doc["paths"].as_object().expect("paths");
    let lists: Vec<String> = paths
        .iter()
        .filter(|(_, item)| item.get("get").is_some())
        .map(|(path, _)| path.clone())
        .collect();

    let mut attempts = Vec::new();
    for (template, item) in paths {
        let target = resolve_path(&client, &base, &owner.token, template, &lists).await;
        for (method_name, operation) in item.as_object().expect("item") {
            let Ok(method) = method_name.to_uppercase().parse::<Method>() else {
                continue;
            };
            let op = format!("{} {template}", method.as_str());
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let parameters: Vec<&Value> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .collect();
            let queries: Vec<&str> = parameters
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            let with =
                |what: &str, target: String| attempt(format!("{op}: {what}"), &method, &target);

            // Query strings.
            attempts.push(with(
                "an unknown parameter",
                format!("{target}?x-unknown=1"),
            ));
            attempts.push(with("an encoded NUL name", format!("{target}?a%00b=1")));
            for name in &queries {
                attempts.push(with(
                    &format!("NUL in `{name}`"),
                    format!("{target}?{name}=a%00b"),
                ));
                attempts.push(with(
                    &format!("a lone surrogate in `{name}`"),
                    format!("{target}?{name}=%ED%A0%80"),
                ));
                attempts.push(with(
                    &format!("bytes that are not UTF-8 in `{name}`"),
                    format!("{target}?{name}=%FF%FE"),
                ));
                attempts.push(with(
                    &format!("`{name}` twice"),
                    format!("{target}?{name}=1&{name}=2"),
                ));
            }
            for parameter in &parameters {
                let name = parameter["name"].as_str().unwrap_or_default();
                if violates(&parameter["schema"], ABSURD) {
                    attempts.push(with(
                        &format!("an absurd `{name}`"),
                        format!("{target}?{name}={}", urlencode(ABSURD)),
                    ));
                }
            }

            // Path ids: the last id of the path replaced by odd ones.
            let template_segments: Vec<&str> = template.split('/').collect();
            if let Some(index) = template_segments.iter().rposition(|s| s.starts_with('{')) {
                let segments: Vec<&str> = target.split('/').collect();
                let real = segments[index].to_string();
                for (what, odd) in [
                    ("an id of NUL", "%00".to_string()),
                    ("a real id with NUL", format!("{real}%00")),
                    ("an id that is not UTF-8", "%FF".to_string()),
                    ("a lone surrogate id", "%ED%A0%80".to_string()),
                    ("an id of no shape", "not-an-id".to_string()),
                    ("an upper-case id", real.to_uppercase()),
                    ("a very long id", "a".repeat(2_000)),
                    ("a dotted id", "..".to_string()),
                    ("another tenant's workspace", other.workspace_id.clone()),
                ] {
                    let mut odd_segments = segments.clone();
                    odd_segments[index] = &odd;
                    attempts.push(with(what, odd_segments.join("/")));
                }
            }

            // Credentials and scoping.
            if secured {
                let mut twice = with("two Authorization headers", target.clone());
                twice
                    .headers
                    .push(("authorization", format!("Bearer {}", owner.token)));
                attempts.push(twice);
                let mut mixed = with("a bearer token and a key pair", target.clone());
                mixed.headers.push(("x-api-key", "psk_x".into()));
                mixed.headers.push(("x-api-secret", "y".into()));
                attempts.push(mixed);
                let mut odd = with("a malformed X-Workspace-ID", target.clone());
                odd.headers.push(("x-workspace-id", "ws_../../etc".into()));
                attempts.push(odd);
                let mut clash = with(
                    "X-Workspace-ID and X-Account-ID disagreeing",
                    target.clone(),
                );
                clash
                    .headers
                    .push(("x-workspace-id", owner.workspace_id.clone()));
                clash
                    .headers
                    .push(("x-account-id", other.workspace_id.clone()));
                attempts.push(clash);
                let mut anonymous = with("no credential", target.clone());
                anonymous.authenticated = false;
                attempts.push(anonymous);
                let mut garbage = with("a garbage bearer token", target.clone());
                garbage.authenticated = false;
                garbage
                    .headers
                    .push(("authorization", "Bearer psk_x".into()));
                attempts.push(garbage);
            }

            // Bodies.
            let Some(schema) = operation.pointer("/requestBody/content/application~1json/schema")
            else {
                continue;
            };
            let body_required = operation
                .pointer("/requestBody/required")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let body = |what: &str, raw: String| {
                let mut a = with(what, target.clone());
                a.body = Some(raw);
                a
            };
            let mut non_objects = vec!["[]", "\"x\"", "1", "true"];
            if body_required {
                non_objects.push("null");
            }
            for raw in non_objects {
                attempts.push(body(&format!("a body of {raw}"), raw.to_string()));
            }
            attempts.push(body("malformed JSON", "{\"a\": ".into()));
            attempts.push(body("trailing garbage", "{} x".into()));
            attempts.push(body(
                "deep nesting",
                format!("{}{}", "[".repeat(300), "]".repeat(300)),
            ));
            attempts.push(body(
                "deep nesting inside an object",
                format!("{{\"a\": {}{}}}", "{\"a\":".repeat(300), "}".repeat(301)),
            ));
            let mut wrong_type = body("a text body", "{}".into());
            wrong_type.content_type = "text/plain";
            attempts.push(wrong_type);
            let properties = document.properties(schema);
            let required: Vec<&String> = properties
                .iter()
                .filter(|(_, (_, required))| *required)
                .map(|(name, _)| name)
                .collect();
            if !required.is_empty() {
                attempts.push(body("an empty object", "{}".into()));
            }
            if let Some(first) = properties.keys().next() {
                attempts.push(body(
                    "a repeated member",
                    format!("{{\"{first}\": \"a\", \"{first}\": \"b\"}}"),
                ));
            }
            attempts.push(body("an unknown member", "{\"x-unknown\": 1}".into()));
            for (name, (property, required)) in &properties {
                for (what, raw) in wrong_values(&document, property, *required) {
                    attempts.push(body(
                        &format!("`{name}` as {what}"),
                        format!("{{\"{name}\": {raw}}}"),
                    ));
                }
            }
        }
    }

    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    let mut failures = Vec::new();
    for attempt in &attempts {
        let mut request = client.request(
            attempt.method.clone(),
            format!("{base}{V1}{}", attempt.target),
        );
        if attempt.authenticated {
            request = request.bearer_auth(&owner.token);
        }
        for (name, value) in &attempt.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &attempt.body {
            request = request
                .header("content-type", attempt.content_type)
                .body(body.clone());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let envelope_ok = body["error"].is_string()
            && body["message"].is_string()
            && body["request_id"].as_str().is_some()
            && body["request_id"].as_str() == request_id.as_deref()
            && (status == 422) == body.get("errors").is_some();
        if !(400..500).contains(&status) || !envelope_ok {
            failures.push(format!(
                "{}: {status} {}",
                attempt.what,
                text.chars().take(300).collect::<String>()
            ));
        }
    }
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(app.pool())
        .await
        .expect("count");
    assert!(
        failures.is_empty(),
        "{} of {} hostile requests were not a clean 4xx:\n{}",
        failures.len(),
        attempts.len(),
        failures.join("\n")
    );
    assert!(
        attempts.len() > 1_000,
        "the sweep covers the document: {}",
        attempts.len()
    );
    assert_eq!(
        events_before, events_after,
        "hostile requests wrote nothing"
    );
    // Still healthy and still serving the owner.
    app.get("/healthz", &owner).await.expect(200);
    app.get(&format!("{V1}/projects"), &owner).await.expect(200);
    eprintln!("hostile sweep: {} requests, all 4xx", attempts.len());
    app.stop().await;
}
