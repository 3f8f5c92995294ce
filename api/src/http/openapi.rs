//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations as the routers are assembled, so it cannot miss a route.

use pulsar_projections::list::{ListSpec, MAX_FILTER_VALUES, MAX_PER_PAGE};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulsar API",
        description = "Scoped API keys, workspace data, webhooks, usage and audit for integrations. \
                       Errors always use the envelope `{error, message, errors?, request_id}`. \
                       Every POST, PUT, PATCH and DELETE accepts an `Idempotency-Key` header \
                       (24 h replay per principal). Authenticated responses carry \
                       `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.",
    ),
    servers((url = "/api/v1")),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Sign-up, login and sessions"),
        (name = "workspaces", description = "Workspaces and their members"),
        (name = "api-keys", description = "Scoped API keys: create, rotate with grace, revoke"),
        (name = "projects", description = "Projects (`projects:*`)"),
        (name = "tasks", description = "Tasks, each in a project (`tasks:*`)"),
        (name = "crm", description = "Contacts, companies and deals (`crm:*`)"),
        (name = "documents", description = "Markdown documents (`documents:*`)"),
        (name = "webhooks", description = "Outbound webhooks and the public event catalog (`webhooks:*`)"),
        (name = "audit", description = "The tamper-evident audit log: signed checkpoints and Merkle proofs (`audit:read`)"),
        (name = "entitlements", description = "Tier limits, usage recorded as events, and what is left (`entitlements:*`)"),
        (name = "usage", description = "Metered usage series for analysts (`usage:read`)"),
        (name = "seo", description = "SEO reports and each URL's current issues (`seo:*`)"),
        (name = "pixel", description = "The public tracking pixel: no credential, the workspace's `pixel_id`, 300 requests per client IP in any minute"),
        (name = "mcp", description = "The MCP server's REST facade: its servers, tools and resources without JSON-RPC (`mcp:read`, `mcp:write` for tools that write)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`psk_…`) or a session token (`pst_…`)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_pair",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

/// Declares the workspace-scoping inputs of API.md section 1 (`X-Workspace-ID`, whose
/// alias `X-Account-ID` it describes, and `workspaceId`) on every authenticated operation, so the document
/// states what the edge accepts ([`crate::http::edge`] reads its rules from here), and the
/// shape of path ids.
pub fn scoping_parameters(openapi: &mut Document) {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::Required;

    let workspace_id = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(crate::http::openapi::WORKSPACE_ID_PATTERN))
            .build()
    };
    let parameter = |name: &str, place: ParameterIn, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(place)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(workspace_id()))
            .build()
    };
    for item in openapi.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            // Every id this API issues has one shape; anything else is 404.
            for parameter in operation.parameters.iter_mut().flatten() {
                if matches!(parameter.parameter_in, ParameterIn::Path) {
                    parameter.schema = Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some(ID_PATTERN))
                            .into(),
                    );
                }
            }
            if operation.security.as_ref().is_none_or(Vec::is_empty) {
                continue;
            }
            let parameters = operation.parameters.get_or_insert_with(Vec::new);
            parameters.push(parameter(
                crate::rest::SCOPING_PARAMETER,
                ParameterIn::Query,
                "The workspace to act in (after the two headers); a key may name only its own.",
            ));
            parameters.push(parameter(
                "X-Workspace-ID",
                ParameterIn::Header,
                "The workspace to act in (`X-Account-ID` is an alias; the two must agree); \
                 a key may name only its own.",
            ));
        }
    }
}

/// The shape of every id: a short prefix naming its kind and 32 hex digits.
pub const ID_PATTERN: &str = "^[a-z]{2,4}_[0-9a-f]{32}$";

/// The shape of a workspace id.
/// Empty is allowed and means "not named", as for any empty header.
pub const WORKSPACE_ID_PATTERN: &str = "^(ws_[0-9a-f]{32})?$";

/// A collection whose list query the document describes from its [`ListSpec`], so the
/// parameters, sort keys, fields, includes and filter values the document names are
/// exactly those the list machinery accepts.
pub trait Listed {
    const SPEC: &'static ListSpec;
}

/// The list query parameters of `L`, for `params(ListQuery<L>)` in a path annotation.
#[derive(Debug)]
pub struct ListQuery<L>(std::marker::PhantomData<L>);

impl<L: Listed> utoipa::IntoParams for ListQuery<L> {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        list_parameters(L::SPEC)
    }
}

/// `^(a|b)(,(a|b)){0,max-1}$`, with an optional `-`/`+` before each name for sorts.
fn comma_list_pattern(names: &[&str], signed: bool, max: usize) -> String {
    let escaped: Vec<String> = names.iter().map(|n| regex_escape(n)).collect();
    // Entries are trimmed, so space around them is allowed.
    let one = format!(
        "\\s*{}({})\\s*",
        if signed { "[-+]?" } else { "" },
        escaped.join("|")
    );
    format!("^{one}(,{one}){{0,{}}}$", max.saturating_sub(1))
}

fn regex_escape(name: &str) -> String {
    name.chars()
        .flat_map(|c| {
            let special = "\\^$.|?*+()[]{}".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

fn list_parameters(spec: &ListSpec) -> Vec<utoipa::openapi::path::Parameter> {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::Required;

    let query = |name: &str, description: String, schema: ObjectBuilder| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema.build()))
            .build()
    };
    let integer = |min: u32, max: u32| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    let pattern = |pattern: String| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
    };
    let time = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
    };
    // A free value: not empty, no comma (it separates values), no NUL; space around it
    // is trimmed away.
    const VALUE: &str = "\\s*[^,\\s\\u0000]([^,\\u0000]*[^,\\s\\u0000])?\\s*";
    let free_list = format!("^{VALUE}(,{VALUE}){{0,{}}}$", MAX_FILTER_VALUES - 1);

    let sortable: Vec<&str> = spec.sortable.iter().map(|c| c.name).collect();
    let mut fields: Vec<&str> = spec.fields.to_vec();
    fields.extend(spec.includes.iter().map(|i| i.name));
    let mut parameters = vec![
        query("page", "1-based page.".into(), integer(1, 1_000_000)),
        query(
            "per_page",
            format!("Items per page, 1 to {MAX_PER_PAGE} (default 25)."),
            integer(1, MAX_PER_PAGE),
        ),
        query(
            "limit",
            "Alias of `per_page` (give one of the two).".into(),
            integer(1, MAX_PER_PAGE),
        ),
        query(
            "sort",
            format!(
                "Comma list of {}; `-` for descending. Default `{}`.",
                sortable.join(", "),
                spec.default_sort
            ),
            pattern(comma_list_pattern(&sortable, true, 10)),
        ),
    ];
    if !spec.fields.is_empty() {
        parameters.push(query(
            "fields",
            "Comma list of the keys to keep in each item.".into(),
            pattern(comma_list_pattern(&fields, false, fields.len())),
        ));
    }
    if !spec.includes.is_empty() {
        let names: Vec<&str> = spec.includes.iter().map(|i| i.name).collect();
        parameters.push(query(
            "include",
            format!("Comma list of relations to embed: {}.", names.join(", ")),
            pattern(comma_list_pattern(&names, false, names.len())),
        ));
    }
    if spec.search.is_some() {
        parameters.push(query(
            "search",
            "Full text over the item's text fields (web-search syntax).".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(200))
                .pattern(Some("^[^\\u0000]*$")),
        ));
    }
    for filter in spec.filters {
        let closed = spec
            .filter_values
            .iter()
            .find(|(name, _)| *name == filter.name)
            .map(|(_, values)| *values);
        let id_prefix = spec
            .id_filters
            .iter()
            .find(|(name, _)| *name == filter.name)
            .map(|(_, prefix)| *prefix);
        let (description, schema) = match (closed, id_prefix) {
            (_, Some(prefix)) => (
                format!("Exact match; a comma list of ids (`{prefix}_…`) matches any."),
                format!(
                    "^\\s*{prefix}_[0-9a-f]{{32}}\\s*(,\\s*{prefix}_[0-9a-f]{{32}}\\s*){{0,{}}}$",
                    MAX_FILTER_VALUES - 1
                ),
            ),
            (Some(values), None) => (
                format!(
                    "Exact match; a comma list of {} matches any.",
                    values.join(", ")
                ),
                comma_list_pattern(values, false, values.len()),
            ),
            (None, None) => (
                "Exact match; a comma list matches any.".to_string(),
                free_list.clone(),
            ),
        };
        parameters.push(query(filter.name, description, pattern(schema)));
    }
    for filter in spec.contains_filters {
        parameters.push(query(
            filter.name,
            "Items having every value of the comma list.".into(),
            pattern(free_list.clone()),
        ));
    }
    for (column, names) in [
        (spec.created_at, ["created_after", "created_before"]),
        (spec.updated_at, ["updated_after", "updated_before"]),
    ] {
        if column.is_some() {
            for name in names {
                parameters.push(query(
                    name,
                    "RFC 3339 timestamp (exclusive).".into(),
                    time(),
                ));
            }
        }
    }
    parameters
}

/// The query parameters of a single item of `L`: `fields` and `include`.
#[derive(Debug)]
pub struct ItemQuery<L>(std::marker::PhantomData<L>);

impl<L: Listed> utoipa::IntoParams for ItemQuery<L> {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        let mut parameters: Vec<_> = list_parameters(L::SPEC)
            .into_iter()
            .filter(|p| p.name == "fields" || p.name == "include")
            .collect();
        parameters.push(as_of_parameter());
        parameters
    }
}

/// `as_of` on a single GET whose resource is folded from its events.
#[derive(Debug)]
pub struct AsOfQuery;

impl utoipa::IntoParams for AsOfQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![as_of_parameter()]
    }
}

fn as_of_parameter() -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    use utoipa::openapi::Required;

    ParameterBuilder::new()
        .name("as_of")
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(
            "RFC 3339 instant: the resource as it stood then, folded from its events \
             (404 if it did not exist yet). Shows what its events record, without \
             read-model-only members.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .build(),
        ))
        .build()
}

/// The document as served: the generated one, finished where generation cannot say
/// everything.
///
/// - Request bodies refuse unknown members (`additionalProperties: false`), but an item
///   in a response is those fields plus its metadata (`allOf`), so the members of an
///   `allOf` in a response schema are left open.
/// - Every key of an item is optional in responses, since `fields` may select any, and
///   a tag may be `{name, count}` (`include=tags`).
/// - The `webhooks` section: every public event type's delivery, from the catalog.
/// - Every operation lists the error answers any route can give (API.md section 3), each
///   with the envelope: 400 for malformed input, 401/403/429 where a credential is
///   checked, 413/415/422 where there is a body, 409 and 412 for writes, 500.
pub fn finish(openapi: &Document) -> serde_json::Value {
    use serde_json::{json, Value};

    let mut doc = serde_json::to_value(openapi).unwrap_or(Value::Null);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        let wrappers: Vec<String> = schemas
            .keys()
            .filter(|name| {
                name.starts_with("ListOut_")
                    || name.starts_with("DataOut_")
                    || name.starts_with("CreatedOut_")
            })
            .cloned()
            .collect();
        for name in wrappers {
            let Some(wrapper) = schemas.get_mut(&name) else {
                continue;
            };
            open_all_of(wrapper, false);
            let data = wrapper
                .pointer_mut("/properties/data/items")
                .map(|items| items.take())
                .or_else(|| wrapper.pointer_mut("/properties/data").map(Value::take));
            if let Some(mut data) = data {
                optional_keys(&mut data, schemas);
                counted_tags(&mut data);
                if let Some(wrapper) = schemas.get_mut(&name) {
                    let slot = if wrapper.pointer("/properties/data/items").is_some() {
                        wrapper.pointer_mut("/properties/data/items")
                    } else {
                        wrapper.pointer_mut("/properties/data")
                    };
                    if let Some(slot) = slot {
                        *slot = data;
                    }
                }
            }
        }
    }
    patch_bodies(&mut doc);
    crate::rest::event_types::Catalog::build().document(&mut doc);
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        })
    };
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                let Some(operation) = operation.as_object_mut() else {
                    continue;
                };
                let secured = operation
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                let body = operation.contains_key("requestBody");
                let writes = method != "get";
                let conditional = method == "patch" || method == "delete";
                let mut common = vec![
                    ("400", "Malformed input: query, headers or body.", true),
                    ("401", "No valid credential.", secured),
                    ("403", "The credential may not do this here.", secured),
                    (
                        "404",
                        "No such resource in this workspace.",
                        path.contains('{'),
                    ),
                    (
                        "409",
                        "A concurrent change or a repeated request still running.",
                        writes,
                    ),
                    (
                        "412",
                        "If-Match names a version that is no longer current.",
                        conditional,
                    ),
                    ("413", "The body is larger than the server's limit.", body),
                    ("415", "The body is not JSON.", body),
                    (
                        "422",
                        "The body does not fit the request schema or rules.",
                        body,
                    ),
                    ("429", "Over the rate limit; see Retry-After.", secured),
                ];
                common.push(("500", "Something went wrong on our side.", true));
                let responses = operation.entry("responses").or_insert_with(|| json!({}));
                if let Some(responses) = responses.as_object_mut() {
                    for (status, description, applies) in common {
                        if applies && !responses.contains_key(status) {
                            responses.insert(status.to_string(), error(description));
                        }
                    }
                }
            }
        }
    }
    doc
}

/// An item's keys are all optional in the document: `fields` may select any of them.
/// Follows `allOf` members and `$ref`s into the components they name.
fn optional_keys(
    schema: &mut serde_json::Value,
    components: &mut serde_json::Map<String, serde_json::Value>,
) {
    use serde_json::Value;
    let Some(map) = schema.as_object_mut() else {
        return;
    };
    map.remove("required");
    if let Some(Value::String(reference)) = map.get("$ref") {
        let name = reference
            .trim_start_matches("#/components/schemas/")
            .to_string();
        if let Some(mut target) = components.get_mut(&name).map(Value::take) {
            optional_keys(&mut target, components);
            components.insert(name, target);
        }
    }
    if let Some(Value::Array(members)) = map.get_mut("allOf") {
        for member in members {
            optional_keys(member, components);
        }
    }
}

/// A PATCH changes any subset of the fields: its body is the resource's schema with
/// nothing required (`{Name}Patch`), and `null` clears a field that is optional.
fn patch_bodies(doc: &mut serde_json::Value) {
    use serde_json::Value;
    let mut patched = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(schema) =
                item.pointer_mut("/patch/requestBody/content/application~1json/schema")
            else {
                continue;
            };
            let Some(name) = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .filter(|name| name.ends_with("Fields"))
                .map(str::to_string)
            else {
                continue;
            };
            *schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}Patch")});
            patched.push(name);
        }
    }
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for name in patched {
        let Some(mut patch) = schemas.get(&name).cloned() else {
            continue;
        };
        if let Some(map) = patch.as_object_mut() {
            map.remove("required");
            map.insert(
                "description".into(),
                Value::String(format!(
                    "Any subset of {name}: absent fields stay, `null` clears an optional one."
                )),
            );
        }
        schemas.insert(format!("{name}Patch"), patch);
    }
}

/// `include=tags` turns an item's `tags` into `[{name, count}]`: a response's tag is
/// either form.
fn counted_tags(schema: &mut serde_json::Value) {
    use serde_json::{json, Value};
    let Some(members) = schema.get_mut("allOf").and_then(Value::as_array_mut) else {
        return;
    };
    for member in members {
        if let Some(tags) = member.pointer_mut("/properties/tags/items") {
            *tags = json!({"anyOf": [
                {"$ref": "#/components/schemas/Tag"},
                {"type": "object", "description": "With `include=tags`.",
                 "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}},
            ]});
        }
    }
}

/// Drops `additionalProperties: false` from the members of every `allOf` below `schema`.
fn open_all_of(schema: &mut serde_json::Value, in_all_of: bool) {
    use serde_json::Value;
    match schema {
        Value::Object(map) => {
            if in_all_of && map.get("additionalProperties") == Some(&Value::Bool(false)) {
                map.remove("additionalProperties");
            }
            for (key, value) in map.iter_mut() {
                if key == "allOf" {
                    if let Value::Array(members) = value {
                        for member in members {
                            open_all_of(member, true);
                        }
                    }
                } else {
                    open_all_of(value, false);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| open_all_of(item, false)),
        _ => {}
    }
}
