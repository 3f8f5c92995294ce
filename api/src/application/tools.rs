//! What AI agents can do: tools, resources and prompts over the application's use
//! cases, one registry for the MCP server and its REST facade.
//!
//! Tools are generated, not written twice. Each record collection gives
//! `<plural>_list|get|create|update` from its [`Resource`]:
//! - the list tool's input schema comes from the collection's `ListSpec` (its filters
//!   and sorts, as the REST list takes them);
//! - the create and update inputs come from the fields' schema (the REST request body);
//! - the outputs come from the item's schema ([`RecordOut`](super::records::RecordOut)), flattened.
//!
//! Each calls the same use case as REST, so scopes, tier limits, events, webhooks and the
//! audit trail are the same. A tool needs all of its permissions to be listed or called.
//! Failures of the use case (validation, limits, missing records, missing scopes) are
//! results with `is_error`, not protocol errors; only an unknown tool is one.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use pulsar_domain::record::RecordKind;
use pulsar_domain::scopes::{Action, Permission, Resource as ScopeResource};
use pulsar_domain::validate::field_error;
use pulsar_domain::ValidationErrors;
use pulsar_projections::list::{ListRequest, ListSpec, Page};
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::records::{self, Companies, Contacts, Deals, Documents, Projects, Resource, Tasks};
use super::{AppState, Auth, Error, Result};

type Args = Map<String, Value>;
type Call = Pin<Box<dyn Future<Output = Result<Value>> + Send>>;
type Handler = Arc<dyn Fn(AppState, Auth, Args) -> Call + Send + Sync>;

/// How a tool behaves, for clients deciding whether to ask before calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
}

const READ_ONLY: Hints = Hints {
    read_only: true,
    destructive: false,
    idempotent: true,
};
const CREATES: Hints = Hints {
    read_only: false,
    destructive: false,
    idempotent: false,
};
const OVERWRITES: Hints = Hints {
    read_only: false,
    destructive: true,
    idempotent: true,
};

/// One tool.
#[derive(Clone)]
pub struct Tool {
    /// `projects_list`: what clients call it (`^[a-zA-Z0-9_-]{1,64}$`).
    pub name: String,
    pub title: String,
    pub description: String,
    /// Every one is needed to see or call it.
    pub permissions: Vec<Permission>,
    pub hints: Hints,
    /// JSON Schema (2020-12) of the arguments: an object.
    pub input_schema: Value,
    /// JSON Schema of `structuredContent`: an object.
    pub output_schema: Value,
    handler: Handler,
}

impl std::fmt::Debug for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Tool {
    /// Whether `auth` may see and call it.
    pub fn allowed(&self, auth: &Auth) -> bool {
        self.permissions.iter().all(|p| auth.scopes.allows(*p))
    }

    /// The tool as MCP describes it.
    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema,
            "annotations": {
                "title": self.title,
                "readOnlyHint": self.hints.read_only,
                "destructiveHint": self.hints.destructive,
                "idempotentHint": self.hints.idempotent,
                "openWorldHint": false,
            },
        })
    }
}

/// A tool call's outcome: the structured result, or the failure's message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Done(Value),
    /// The use case refused or failed: `code` is the REST error code
    /// (`validation_failed`, `feature_limit_reached`, ...).
    Failed {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
}

impl Outcome {
    /// The MCP `CallToolResult`: `structuredContent` plus the same as a text block, or
    /// `isError` with the message.
    pub fn to_result(&self) -> Value {
        match self {
            Outcome::Done(value) => json!({
                "content": [{"type": "text", "text": value.to_string()}],
                "structuredContent": value,
                "isError": false,
            }),
            Outcome::Failed {
                code,
                message,
                details,
            } => {
                let mut text = format!("{code}: {message}");
                if let Some(details) = details {
                    text.push_str(&format!(" {details}"));
                }
                json!({"content": [{"type": "text", "text": text}], "isError": true})
            }
        }
    }
}

/// Every tool, in a stable order.
#[derive(Debug)]
pub struct Registry {
    tools: Vec<Tool>,
}

impl Registry {
    pub fn get() -> &'static Registry {
        static REGISTRY: OnceLock<Registry> = OnceLock::new();
        REGISTRY.get_or_init(Registry::build)
    }

    fn build() -> Registry {
        let mut tools = Vec::new();
        tools.extend(record_tools::<Projects>(CRUD));
        tools.extend(record_tools::<Tasks>(CRUD));
        tools.extend(record_tools::<Contacts>(CRUD));
        tools.extend(record_tools::<Companies>(CRUD));
        tools.extend(record_tools::<Deals>(CRUD));
        tools.extend(record_tools::<Documents>(&[Verb::Get]));
        tools.push(documents_search());
        tools.push(workspace_summary());
        tools.push(usage_summary());
        Registry { tools }
    }

    /// The tools `auth` may use.
    pub fn visible<'a>(&'a self, auth: &'a Auth) -> impl Iterator<Item = &'a Tool> + 'a {
        self.tools.iter().filter(|t| t.allowed(auth))
    }

    /// The tool called `name`, or by its dotted alias (`projects.list`).
    pub fn find(&self, name: &str) -> Option<&Tool> {
        let canonical = name.replacen('.', "_", 1);
        self.tools
            .iter()
            .find(|t| t.name == name || (name.contains('.') && t.name == canonical))
    }

    /// Calls `tool` for `auth`. Missing permissions, bad arguments and the use case's
    /// refusals are [`Outcome::Failed`]; nothing here is a protocol error.
    pub async fn call(&self, state: &AppState, auth: &Auth, tool: &Tool, args: Args) -> Outcome {
        match self.run(state, auth, tool, args).await {
            Ok(value) => Outcome::Done(value),
            Err(error) => failed(error),
        }
    }

    /// Runs `tool` for `auth`: its structured result, or the use case's error as REST
    /// reports it (403 for a missing scope).
    pub async fn run(
        &self,
        state: &AppState,
        auth: &Auth,
        tool: &Tool,
        args: Args,
    ) -> Result<Value> {
        if let Some(missing) = tool.permissions.iter().find(|p| !auth.scopes.allows(**p)) {
            return Err(Error::AccessDenied(format!(
                "This credential lacks the `{missing}` scope that `{}` needs.",
                tool.name
            )));
        }
        (tool.handler)(state.clone(), auth.clone(), args).await
    }
}

fn failed(error: Error) -> Outcome {
    if let Error::Internal(context) = &error {
        tracing::error!(%context, "a tool failed");
    }
    let details = match &error {
        Error::Validation(errors) => serde_json::to_value(errors).ok(),
        Error::FeatureLimitReached {
            feature,
            limit,
            upgrade_url,
            ..
        } => Some(json!({"feature": feature, "limit": limit, "upgrade_url": upgrade_url})),
        _ => None,
    };
    Outcome::Failed {
        code: error.code(),
        message: error.message(),
        details,
    }
}

// Schemas ----------------------------------------------------------------------------------

/// `T`'s schema as a self-contained JSON Schema: the components it refers to go under
/// `$defs`, and references point there.
pub fn json_schema<T: ToSchema>() -> Value {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    let mut root = serde_json::to_value(T::schema()).unwrap_or(Value::Null);
    let defs: Map<String, Value> = referenced
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or(Value::Null)))
        .collect();
    if !defs.is_empty() {
        root["$defs"] = Value::Object(defs);
    }
    rewrite_refs(&mut root);
    root
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                if let Some(name) = reference.strip_prefix("#/components/schemas/") {
                    *reference = format!("#/$defs/{name}");
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// An output schema: open (a result's shape only grows, so members it does not list
/// are allowed), whatever the request types refuse.
fn open(mut schema: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if map.get("additionalProperties") == Some(&Value::Bool(false)) {
                    map.remove("additionalProperties");
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// An item's schema (its fields and [`RecordMetaOut`](super::records::RecordMetaOut)), as one
/// object: MCP clients want an output schema whose root is `"type": "object"`, and a
/// generic item's `allOf` of two references would name a component the derive does not
/// collect.
fn item_schema<F: ToSchema>() -> Value {
    let mut item = json!({"type": "object", "properties": {}, "required": []});
    for mut part in [
        json_schema::<F>(),
        json_schema::<super::records::RecordMetaOut>(),
    ] {
        hoist_defs(&mut item, &mut part);
        if let Some(Value::Object(properties)) = part.get("properties") {
            if let Some(Value::Object(target)) = item.get_mut("properties") {
                target.extend(properties.clone());
            }
        }
        if let Some(Value::Array(required)) = part.get("required") {
            if let Some(Value::Array(target)) = item.get_mut("required") {
                target.extend(required.iter().cloned());
            }
        }
    }
    open(item)
}

/// Moves `inner`'s `$defs` up into `outer` (so `inner` can be nested in it).
fn hoist_defs(outer: &mut Value, inner: &mut Value) {
    if let Some(Value::Object(defs)) = inner.as_object_mut().and_then(|m| m.remove("$defs")) {
        let target = outer
            .as_object_mut()
            .map(|m| m.entry("$defs").or_insert_with(|| json!({})));
        if let Some(Value::Object(target)) = target {
            target.extend(defs);
        }
    }
}

/// `{data: [item], meta: {current_page, per_page, total, last_page}}`.
fn page_schema(item: Value) -> Value {
    let mut item = item;
    let mut schema = json!({});
    hoist_defs(&mut schema, &mut item);
    let defs = schema.get("$defs").cloned();
    let mut schema = json!({
        "type": "object",
        "properties": {
            "data": {"type": "array", "items": item},
            "meta": {
                "type": "object",
                "properties": {
                    "current_page": {"type": "integer"},
                    "per_page": {"type": "integer"},
                    "total": {"type": "integer"},
                    "last_page": {"type": "integer"},
                },
                "required": ["current_page", "per_page", "total", "last_page"],
            },
        },
        "required": ["data", "meta"],
    });
    if let Some(defs) = defs {
        schema["$defs"] = defs;
    }
    schema
}

fn page_value(page: Page) -> Value {
    let last_page = page.last_page();
    json!({
        "data": page.items,
        "meta": {
            "current_page": page.page,
            "per_page": page.per_page,
            "total": page.total,
            "last_page": last_page,
        },
    })
}

/// The list tool's arguments, from the collection's list spec.
fn list_input(spec: &ListSpec) -> Value {
    let mut properties = Map::new();
    properties.insert(
        "page".into(),
        json!({"type": "integer", "minimum": 1, "description": "1-based page, default 1"}),
    );
    properties.insert(
        "per_page".into(),
        json!({"type": "integer", "minimum": 1, "maximum": 100, "description": "default 25"}),
    );
    let sortable: Vec<&str> = spec.sortable.iter().map(|c| c.name).collect();
    properties.insert(
        "sort".into(),
        json!({"type": "string", "description": format!(
            "Comma list of {}; `-` before one for descending, e.g. `-{}`.",
            sortable.join(", "),
            sortable.first().copied().unwrap_or("created_at"))}),
    );
    if spec.search.is_some() {
        properties.insert(
            "search".into(),
            json!({"type": "string", "description": "Full-text search over the item's text"}),
        );
    }
    for column in spec.filters {
        let mut filter =
            json!({"type": "string", "description": "Exact match; a comma list matches any"});
        if let Some((_, values)) = spec.filter_values.iter().find(|(n, _)| *n == column.name) {
            filter["description"] = json!(format!(
                "One of {} (a comma list matches any)",
                values.join(", ")
            ));
        }
        properties.insert(column.name.into(), filter);
    }
    for column in spec.contains_filters {
        properties.insert(
            column.name.into(),
            json!({"type": "string", "description": "Comma list: items having all of them"}),
        );
    }
    for (present, names) in [
        (
            spec.created_at.is_some(),
            ["created_after", "created_before"],
        ),
        (
            spec.updated_at.is_some(),
            ["updated_after", "updated_before"],
        ),
    ] {
        if present {
            for name in names {
                properties.insert(
                    name.into(),
                    json!({"type": "string", "format": "date-time"}),
                );
            }
        }
    }
    json!({"type": "object", "properties": properties, "additionalProperties": false})
}

/// Arguments as the list query pairs REST would get: strings, and numbers as text.
fn list_pairs(args: Args) -> Result<Vec<(String, String)>> {
    let mut errors = ValidationErrors::new();
    let mut pairs = Vec::with_capacity(args.len());
    for (name, value) in args {
        match value {
            Value::String(text) => pairs.push((name, text)),
            Value::Number(n) => pairs.push((name, n.to_string())),
            Value::Null => {}
            _ => errors.add(name, "Must be a string or a number."),
        }
    }
    errors.into_result()?;
    Ok(pairs)
}

fn list_request(spec: &ListSpec, args: Args) -> Result<ListRequest> {
    ListRequest::parse(spec, &list_pairs(args)?, &[]).map_err(Error::BadRequest)
}

/// Deserializes arguments as `T`, naming the field that does not fit.
fn typed<T: DeserializeOwned>(args: Args) -> Result<T> {
    serde_path_to_error::deserialize(Value::Object(args)).map_err(|error| {
        let (field, message) = field_error(&error.path().to_string(), error.inner());
        Error::Validation(ValidationErrors::single(field, message))
    })
}

/// Takes the required string `id` out of the arguments.
fn take_id(args: &mut Args) -> Result<String> {
    match args.remove("id") {
        Some(Value::String(id)) => Ok(id),
        Some(_) => Err(Error::invalid("id", "The id must be a string.")),
        None => Err(Error::invalid("id", "The id field is required.")),
    }
}

fn id_input(noun: &str) -> Value {
    json!({
        "type": "object",
        "properties": {"id": {"type": "string", "description": format!("The {noun}'s id")}},
        "required": ["id"],
        "additionalProperties": false,
    })
}

// Record tools -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    List,
    Get,
    Create,
    Update,
}

const CRUD: &[Verb] = &[Verb::List, Verb::Get, Verb::Create, Verb::Update];

fn permission<R: Resource>(action: Action) -> Permission {
    Permission(R::SCOPE, action)
}

fn handler<F, Fut>(f: F) -> Handler
where
    F: Fn(AppState, Auth, Args) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value>> + Send + 'static,
{
    Arc::new(move |state, auth, args| Box::pin(f(state, auth, args)))
}

/// The collection's tools for `verbs`.
fn record_tools<R>(verbs: &[Verb]) -> Vec<Tool>
where
    R: Resource,
    <R::Kind as RecordKind>::Fields: ToSchema,
{
    let plural = R::NAME;
    let noun = <R::Kind as RecordKind>::NOUN;
    let item = item_schema::<<R::Kind as RecordKind>::Fields>();
    let fields = json_schema::<<R::Kind as RecordKind>::Fields>();
    verbs
        .iter()
        .map(|verb| match verb {
            Verb::List => Tool {
                name: format!("{plural}_list"),
                title: format!("List {plural}"),
                description: format!(
                    "Lists the workspace's {plural}: filter, search, sort and page as the REST list does."
                ),
                permissions: vec![permission::<R>(Action::Read)],
                hints: READ_ONLY,
                input_schema: list_input(R::SPEC),
                output_schema: page_schema(item.clone()),
                handler: handler(|state, auth, args| async move {
                    let request = list_request(R::SPEC, args)?;
                    Ok(page_value(records::list::<R>(&state, &auth, &request).await?))
                }),
            },
            Verb::Get => Tool {
                name: format!("{plural}_get"),
                title: format!("Get a {noun}"),
                description: format!("One {noun} by id."),
                permissions: vec![permission::<R>(Action::Read)],
                hints: READ_ONLY,
                input_schema: id_input(noun),
                output_schema: item.clone(),
                handler: handler(|state, auth, mut args| async move {
                    let id = take_id(&mut args)?;
                    if let Some(extra) = args.keys().next() {
                        return Err(Error::BadRequest(format!("Unknown argument `{extra}`.")));
                    }
                    let request = ListRequest::item(R::SPEC, &[], &[]).map_err(Error::BadRequest)?;
                    records::get::<R>(&state, &auth, &id, &request, None).await
                }),
            },
            Verb::Create => Tool {
                name: format!("{plural}_create"),
                title: format!("Create a {noun}"),
                description: format!(
                    "Creates a {noun}; beyond the workspace tier's limit it is refused (feature_limit_reached)."
                ),
                permissions: vec![permission::<R>(Action::Write)],
                hints: CREATES,
                input_schema: fields.clone(),
                output_schema: item.clone(),
                handler: handler(|state, auth, args| async move {
                    let fields: <R::Kind as RecordKind>::Fields = typed(args)?;
                    records::create::<R>(&state, &auth, fields).await
                }),
            },
            Verb::Update => Tool {
                name: format!("{plural}_update"),
                title: format!("Update a {noun}"),
                description: format!(
                    "Changes some of a {noun}'s fields: absent ones stay, null clears an optional one."
                ),
                permissions: vec![permission::<R>(Action::Write)],
                hints: OVERWRITES,
                input_schema: update_input(&fields, noun),
                output_schema: item.clone(),
                handler: handler(|state, auth, mut args| async move {
                    let id = take_id(&mut args)?;
                    records::update::<R>(&state, &auth, &id, args, None).await
                }),
            },
        })
        .collect()
}

/// The fields' schema with every field optional, plus the required `id`.
fn update_input(fields: &Value, noun: &str) -> Value {
    let mut schema = fields.clone();
    if let Some(map) = schema.as_object_mut() {
        map.remove("required");
        let properties = map.entry("properties").or_insert_with(|| json!({}));
        if let Some(properties) = properties.as_object_mut() {
            properties.insert(
                "id".into(),
                json!({"type": "string", "description": format!("The {noun}'s id")}),
            );
        }
        map.insert("required".into(), json!(["id"]));
    }
    schema
}

fn documents_search() -> Tool {
    let item = item_schema::<<<Documents as Resource>::Kind as RecordKind>::Fields>();
    Tool {
        name: "documents_search".into(),
        title: "Search documents".into(),
        description: "Full-text search over the workspace's documents (title, body, tags), best matches first unless sorted."
            .into(),
        permissions: vec![permission::<Documents>(Action::Read)],
        hints: READ_ONLY,
        input_schema: json!({
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "description": "Words to find"},
                "tag": {"type": "string", "description": "Comma list: documents having all these tags"},
                "page": {"type": "integer", "minimum": 1},
                "per_page": {"type": "integer", "minimum": 1, "maximum": 100},
            },
            "required": ["query"],
            "additionalProperties": false,
        }),
        output_schema: page_schema(item),
        handler: handler(|state, auth, mut args| async move {
            let query = match args.remove("query") {
                Some(Value::String(q)) if !q.trim().is_empty() => q,
                _ => return Err(Error::invalid("query", "Give the words to search for.")),
            };
            args.insert("search".into(), Value::String(query));
            let request = list_request(Documents::SPEC, args)?;
            Ok(page_value(records::list::<Documents>(&state, &auth, &request).await?))
        }),
    }
}

fn workspace_summary() -> Tool {
    Tool {
        name: "workspace_summary".into(),
        title: "Workspace summary".into(),
        description: "The workspace (name, tier, settings) and, per feature, what is used of its tier's limits."
            .into(),
        permissions: vec![
            Permission(ScopeResource::Workspaces, Action::Read),
            Permission(ScopeResource::Entitlements, Action::Read),
        ],
        hints: READ_ONLY,
        input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        output_schema: json!({
            "type": "object",
            "properties": {
                "workspace": {"type": "object", "required": ["id", "name", "tier"]},
                "entitlements": {"type": "object", "required": ["tier", "entitlements"]},
            },
            "required": ["workspace", "entitlements"],
        }),
        handler: handler(|state, auth, args| async move {
            no_arguments(&args)?;
            let workspace =
                super::workspaces::get(&state, &auth.principal, &auth.workspace_id, None).await?;
            let entitlements = super::entitlements::summary(&state, &auth).await?;
            Ok(json!({"workspace": workspace, "entitlements": entitlements}))
        }),
    }
}

fn usage_summary() -> Tool {
    Tool {
        name: "usage_summary".into(),
        title: "Usage this month".into(),
        description: "Metered usage since the start of the UTC month: totals per feature and API calls per key."
            .into(),
        permissions: vec![Permission(ScopeResource::Usage, Action::Read)],
        hints: READ_ONLY,
        input_schema: json!({"type": "object", "properties": {}, "additionalProperties": false}),
        output_schema: json!({
            "type": "object",
            "properties": {
                "from": {"type": "string", "format": "date-time"},
                "to": {"type": "string", "format": "date-time"},
                "features": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"feature": {"type": "string"}, "count": {"type": "integer"}},
                    "required": ["feature", "count"]}},
                "api_keys": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"api_key_id": {"type": "string"}, "count": {"type": "integer"}},
                    "required": ["api_key_id", "count"]}},
            },
            "required": ["from", "to", "features", "api_keys"],
        }),
        handler: handler(|state, auth, args| async move {
            no_arguments(&args)?;
            let now = state.clock.now();
            let (from, to) = (
                pulsar_domain::entitlements::month_start(now),
                pulsar_domain::entitlements::next_month(now),
            );
            let mut query = super::usage::UsageQuery {
                feature: None,
                from,
                to,
                granularity: super::usage::Granularity::Month,
                by_key: false,
                api_key_ids: Vec::new(),
                tz: "UTC".into(),
            };
            let features = super::usage::query(&state, &auth, &query).await?;
            query.by_key = true;
            query.feature = Some(pulsar_domain::entitlements::Feature::ApiCalls);
            let keys = super::usage::query(&state, &auth, &query).await?;
            let at = |t: chrono::DateTime<chrono::Utc>| {
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            };
            Ok(json!({
                "from": at(from),
                "to": at(to),
                "features": features.iter().map(|r| json!({"feature": r.feature, "count": r.count})).collect::<Vec<_>>(),
                "api_keys": keys.iter()
                    .filter(|r| r.api_key_id.as_deref().is_some_and(|k| !k.is_empty()))
                    .map(|r| json!({"api_key_id": r.api_key_id, "count": r.count}))
                    .collect::<Vec<_>>(),
            }))
        }),
    }
}

fn no_arguments(args: &Args) -> Result<()> {
    match args.keys().next() {
        Some(name) => Err(Error::BadRequest(format!(
            "Unknown argument `{name}`; this tool takes none."
        ))),
        None => Ok(()),
    }
}
