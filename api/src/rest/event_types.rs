//! `GET /event-types` and the OpenAPI `webhooks` section, both generated from the
//! domain's public event catalog ([`pulsar_domain::catalog`]): one entry per public type,
//! with the JSON Schema of its `data` taken from the same Rust type that builds it.

use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use pulsar_domain::catalog::{
    self, ApiKeyData, EventType, MemberData, PublicResource, RecordData, ThresholdData,
    WebhookData, WorkspaceData,
};
use pulsar_domain::record::RecordKind;
use pulsar_domain::scopes::{Action, Permission, Resource};
use pulsar_domain::workspace_data::{
    CompanyFields, CompanyKind, ContactFields, ContactKind, DealFields, DealKind, DocumentFields,
    DocumentKind, ProjectFields, ProjectKind, TaskFields, TaskKind,
};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::application::AppState;
use crate::application::Auth;
use crate::application::Result;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_event_types))
}

/// One public event type.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeOut {
    /// `<resource>.<past-tense verb>`, e.g. `projects.updated`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub description: String,
    /// The JSON Schema (2020-12) of the event's `data`, self-contained.
    #[schema(value_type = Object)]
    pub schema: Value,
}

/// Every public event type with its description and the schema of its `data`
/// (`webhooks:read`).
#[utoipa::path(get, path = "/event-types", tag = "webhooks",
    responses((status = 200, body = inline(EventTypesOut))),
    security(("bearer" = []), ("api_key_pair" = [])))]
async fn list_event_types(auth: Auth) -> Result<Response> {
    auth.require(Permission(Resource::Webhooks, Action::Read))?;
    let catalog = Catalog::build();
    let data: Vec<EventTypeOut> = catalog::event_types()
        .map(|t| EventTypeOut {
            event_type: t.name.to_string(),
            description: t.description.to_string(),
            schema: catalog.self_contained(t),
        })
        .collect();
    Ok(axum::Json(json!({ "data": data })).into_response())
}

/// `{"data": [...]}` of `GET /event-types`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypesOut {
    pub data: Vec<EventTypeOut>,
}

/// The catalog's data schemas: one named schema per public resource, and the component
/// schemas they refer to.
pub struct Catalog {
    /// Component name → schema (JSON), for `#/components/schemas/...` references.
    pub components: BTreeMap<String, Value>,
}

fn to_json(schema: RefOr<Schema>) -> Value {
    serde_json::to_value(schema).unwrap_or(Value::Null)
}

/// A schema and everything it refers to, added to `components` under its name.
fn add<T: ToSchema>(components: &mut BTreeMap<String, Value>) {
    let mut referenced = Vec::new();
    T::schemas(&mut referenced);
    for (name, schema) in referenced {
        components.entry(name).or_insert_with(|| to_json(schema));
    }
    components.insert(T::name().into_owned(), to_json(T::schema()));
}

/// The component name of the data schema of `resource`.
fn data_schema(resource: PublicResource) -> String {
    let record = |fields: &str| format!("RecordData_{fields}");
    match resource {
        PublicResource::Workspace => WorkspaceData::name().into_owned(),
        PublicResource::Member => MemberData::name().into_owned(),
        PublicResource::ApiKey => ApiKeyData::name().into_owned(),
        PublicResource::Webhook => WebhookData::name().into_owned(),
        PublicResource::Entitlement => ThresholdData::name().into_owned(),
        PublicResource::Record(kind) => match kind {
            k if k == ProjectKind::TYPE => record("ProjectFields"),
            k if k == TaskKind::TYPE => record("TaskFields"),
            k if k == ContactKind::TYPE => record("ContactFields"),
            k if k == CompanyKind::TYPE => record("CompanyFields"),
            k if k == DealKind::TYPE => record("DealFields"),
            k if k == DocumentKind::TYPE => record("DocumentFields"),
            other => format!("RecordData_{other}"),
        },
    }
}

impl Catalog {
    pub fn build() -> Self {
        let mut components = BTreeMap::new();
        add::<WorkspaceData>(&mut components);
        add::<MemberData>(&mut components);
        add::<ApiKeyData>(&mut components);
        add::<WebhookData>(&mut components);
        add::<ThresholdData>(&mut components);
        // Generic schemas are named after their parameter.
        // Generic schemas are named after their parameter. The fields are inlined, and
        // open: a request body refuses unknown members, an event's data has more.
        macro_rules! record {
            ($fields:ty, $name:literal) => {{
                let mut referenced = Vec::new();
                <RecordData<$fields> as ToSchema>::schemas(&mut referenced);
                <$fields as ToSchema>::schemas(&mut referenced);
                for (name, schema) in referenced {
                    components.entry(name).or_insert_with(|| to_json(schema));
                }
                let mut fields = to_json(<$fields as PartialSchema>::schema());
                if let Some(map) = fields.as_object_mut() {
                    map.remove("additionalProperties");
                }
                let mut data = to_json(<RecordData<$fields> as PartialSchema>::schema());
                if let Some(first) = data.pointer_mut("/allOf/0") {
                    *first = fields;
                }
                components.insert(concat!("RecordData_", $name).to_string(), data);
            }};
        }
        record!(ProjectFields, "ProjectFields");
        record!(TaskFields, "TaskFields");
        record!(ContactFields, "ContactFields");
        record!(CompanyFields, "CompanyFields");
        record!(DealFields, "DealFields");
        record!(DocumentFields, "DocumentFields");
        Self { components }
    }

    /// The schema of `event_type`'s data, every reference inlined (for
    /// `GET /event-types`, whose readers have no document to resolve them in).
    pub fn self_contained(&self, event_type: &EventType) -> Value {
        let mut schema =
            json!({"$ref": format!("#/components/schemas/{}", data_schema(event_type.resource))});
        self.inline(&mut schema, 0);
        if let Some(map) = schema.as_object_mut() {
            map.insert(
                "$schema".into(),
                json!("https://json-schema.org/draft/2020-12/schema"),
            );
        }
        schema
    }

    fn inline(&self, value: &mut Value, depth: usize) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    let name = reference.trim_start_matches("#/components/schemas/");
                    if let (Some(target), true) = (self.components.get(name), depth < 32) {
                        let mut target = target.clone();
                        self.inline(&mut target, depth + 1);
                        map.remove("$ref");
                        if let Value::Object(target) = target {
                            for (key, value) in target {
                                map.entry(key).or_insert(value);
                            }
                        }
                        return;
                    }
                }
                for child in map.values_mut() {
                    self.inline(child, depth);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.inline(item, depth)),
            _ => {}
        }
    }

    /// Adds the OpenAPI 3.1 `webhooks` section (one entry per public type: the delivery
    /// body, its headers and the expected answer) and the schemas it refers to.
    pub fn document(&self, doc: &mut Value) {
        if let Some(schemas) = doc
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        {
            for (name, schema) in &self.components {
                schemas
                    .entry(name.clone())
                    .or_insert_with(|| schema.clone());
            }
        }
        let mut webhooks = serde_json::Map::new();
        for event_type in catalog::event_types() {
            let body = json!({
                "type": "object",
                "required": ["id", "type", "workspace_id", "created_at", "data"],
                "properties": {
                    "id": {"type": "string", "description": "`evt_…`: the same for every delivery of this event (also `webhook-id`)."},
                    "type": {"const": event_type.name},
                    "workspace_id": {"type": ["string", "null"]},
                    "created_at": {"type": "string", "format": "date-time"},
                    "data": {"$ref": format!("#/components/schemas/{}", data_schema(event_type.resource))},
                },
            });
            webhooks.insert(
                event_type.name.to_string(),
                json!({"post": {
                    "summary": event_type.name,
                    "description": event_type.description,
                    "parameters": [
                        {"name": "x-pulsar-event", "in": "header", "required": true, "schema": {"const": event_type.name}},
                        {"name": "x-pulsar-delivery-id", "in": "header", "required": true, "schema": {"type": "string"}},
                        {"name": "x-pulsar-signature-timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
                        {"name": "x-pulsar-signature", "in": "header", "required": true,
                         "description": "`t=<unix>,v1=<hex HMAC-SHA256>`; one `v1` per valid secret during a rotation.",
                         "schema": {"type": "string"}},
                        {"name": "webhook-id", "in": "header", "required": true, "schema": {"type": "string"}},
                        {"name": "webhook-timestamp", "in": "header", "required": true, "schema": {"type": "string"}},
                        {"name": "webhook-signature", "in": "header", "required": true,
                         "description": "Standard Webhooks `v1,<base64>`, space-separated during a rotation.",
                         "schema": {"type": "string"}},
                    ],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
                    "responses": {"2XX": {"description": "Any 2xx acknowledges the delivery."}},
                }}),
            );
        }
        if let Some(map) = doc.as_object_mut() {
            map.insert("webhooks".into(), Value::Object(webhooks));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_a_self_contained_schema() {
        let catalog = Catalog::build();
        for event_type in catalog::event_types() {
            let schema = catalog.self_contained(event_type);
            let text = schema.to_string();
            assert!(!text.contains("$ref"), "{}: {text}", event_type.name);
            assert!(
                schema["properties"].is_object() || schema["allOf"].is_array(),
                "{}: {text}",
                event_type.name
            );
        }
    }
}
