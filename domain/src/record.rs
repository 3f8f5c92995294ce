//! [`Record`]: the one aggregate shape behind every piece of workspace data (projects,
//! tasks, contacts, companies, deals, documents).
//!
//! A record belongs to one workspace for life, holds one [`RecordKind::Fields`] value,
//! and has three facts: created, updated (the changed field names and the whole
//! resulting state, so projections and webhooks need nothing else) and deleted. Each
//! kind supplies its fields, their normalisation and validation, and which fields
//! reference other aggregates; this module supplies the rules they share:
//!
//! - a record only ever answers commands for its own workspace (anything else is
//!   "not found", so one tenant cannot probe another's ids);
//! - a reference (a task's project, a deal's company) must name a live aggregate of the
//!   right kind in the same workspace. The domain does no I/O, so the command carries
//!   the references the caller found live in the workspace, and the record decides;
//! - a patch is a JSON object merged onto the current fields and typed again, so a
//!   `null` clears an optional field and a required one cannot be cleared.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::marker::PhantomData;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DomainError, ValidationErrors};
use crate::metadata::Actor;

/// What one kind of record is: its name, its fields and their rules.
pub trait RecordKind: Clone + Debug + Default + PartialEq + Send + Sync + 'static {
    /// The aggregate type in the event store, e.g. `Project`; events are named after it
    /// (`ProjectCreated`).
    const TYPE: &'static str;
    /// The id prefix, e.g. `proj`.
    const ID_PREFIX: &'static str;
    /// How messages name it, e.g. `project`.
    const NOUN: &'static str;

    /// The record's state as clients write it (and as events carry it).
    type Fields: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync;

    /// Trims and tidies (e.g. de-duplicates tags) before validation.
    fn normalize(fields: Self::Fields) -> Self::Fields;

    /// Field rules that need no other aggregate: lengths, ranges, formats.
    fn validate(fields: &Self::Fields) -> ValidationErrors;

    /// The references `fields` holds: `(field, id)` for each one that is set.
    fn references(fields: &Self::Fields) -> Vec<(&'static str, String)>;
}

/// References the caller found live in the command's workspace: `(field, id)` pairs.
pub type LiveReferences = BTreeSet<(String, String)>;

/// Commands on a record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordCommand<K: RecordKind> {
    Create {
        workspace_id: String,
        fields: K::Fields,
        created_by: Actor,
        live: LiveReferences,
    },
    /// `patch` is a JSON object of the fields to change.
    Update {
        workspace_id: String,
        patch: Map<String, Value>,
        live: LiveReferences,
    },
    Delete {
        workspace_id: String,
    },
}

/// Facts about a record. Serialized as `{"Created": {...}}` etc.; the stored event type
/// is the kind's name plus the variant (`TaskUpdated`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "")]
pub enum RecordEvent<K: RecordKind> {
    Created {
        workspace_id: String,
        fields: K::Fields,
        created_by: Actor,
    },
    /// `fields` is the whole state after the change; `changed` names what differs.
    Updated {
        workspace_id: String,
        fields: K::Fields,
        changed: Vec<String>,
    },
    Deleted {
        workspace_id: String,
    },
}

impl<K: RecordKind> DomainEvent for RecordEvent<K> {
    fn event_type(&self) -> String {
        let verb = match self {
            Self::Created { .. } => "Created",
            Self::Updated { .. } => "Updated",
            Self::Deleted { .. } => "Deleted",
        };
        format!("{}{verb}", K::TYPE)
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

/// The aggregate: one record's current state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Record<K: RecordKind> {
    workspace_id: String,
    fields: Option<K::Fields>,
    deleted: bool,
    #[serde(skip)]
    kind: PhantomData<K>,
}

impl<K: RecordKind> crate::Tenanted for Record<K> {
    fn tenant(&self, _: &str) -> Option<String> {
        (!self.workspace_id.is_empty()).then(|| self.workspace_id.clone())
    }
}

impl<K: RecordKind> Default for Record<K> {
    fn default() -> Self {
        Self {
            workspace_id: String::new(),
            fields: None,
            deleted: false,
            kind: PhantomData,
        }
    }
}

impl<K: RecordKind> Record<K> {
    /// The live fields, if the record exists in `workspace_id`.
    fn live_in(&self, workspace_id: &str) -> Result<&K::Fields, DomainError> {
        match &self.fields {
            Some(fields) if !self.deleted && self.workspace_id == workspace_id => Ok(fields),
            _ => Err(DomainError::NotFound(K::NOUN)),
        }
    }
}

/// Merges a JSON patch onto `fields` and types the result again.
pub fn merge<K: RecordKind>(
    fields: &K::Fields,
    patch: &Map<String, Value>,
) -> Result<K::Fields, ValidationErrors> {
    let mut merged = match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    for (name, value) in patch {
        merged.insert(name.clone(), value.clone());
    }
    serde_path_to_error::deserialize(Value::Object(merged)).map_err(|error| {
        let path = error.path().to_string();
        let (field, message) = crate::validate::field_error(&path, error.inner());
        ValidationErrors::single(field, message)
    })
}

/// The names of the top-level fields whose values differ.
fn changed<T: Serialize>(before: &T, after: &T) -> Vec<String> {
    let (Ok(Value::Object(before)), Ok(Value::Object(after))) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Vec::new();
    };
    after
        .iter()
        .filter(|(name, value)| before.get(*name) != Some(value))
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every reference in `fields` named in `check` must be among the live ones (one already
/// refused for its shape is not also reported missing).
fn check_references<K: RecordKind>(
    fields: &K::Fields,
    check: impl Fn(&str) -> bool,
    live: &LiveReferences,
    errors: &mut ValidationErrors,
) {
    for (field, id) in K::references(fields) {
        if check(field)
            && !errors.fields().contains_key(field)
            && !live.contains(&(field.to_string(), id.clone()))
        {
            errors.add(
                field,
                format!("The selected {field} is invalid: no such record in this workspace."),
            );
        }
    }
}

impl<K: RecordKind> Aggregate for Record<K> {
    const TYPE: &'static str = K::TYPE;
    type Command = RecordCommand<K>;
    type Event = RecordEvent<K>;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: RecordCommand<K>,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            RecordCommand::Create {
                workspace_id,
                fields,
                created_by,
                live,
            } => {
                if self.fields.is_some() {
                    return Err(DomainError::AlreadyExists(K::NOUN));
                }
                let fields = K::normalize(fields);
                let mut errors = K::validate(&fields);
                check_references::<K>(&fields, |_| true, &live, &mut errors);
                errors.into_result()?;
                sink.write(
                    RecordEvent::Created {
                        workspace_id,
                        fields,
                        created_by,
                    },
                    self,
                )
                .await;
            }
            RecordCommand::Update {
                workspace_id,
                patch,
                live,
            } => {
                let current = self.live_in(&workspace_id)?;
                let next = K::normalize(merge::<K>(current, &patch)?);
                let changed = changed(current, &next);
                let mut errors = K::validate(&next);
                // Only references being set now are checked: a project deleted after
                // its tasks were filed must not block editing their titles.
                check_references::<K>(
                    &next,
                    |f| changed.iter().any(|c| c == f),
                    &live,
                    &mut errors,
                );
                errors.into_result()?;
                if changed.is_empty() {
                    return Ok(());
                }
                sink.write(
                    RecordEvent::Updated {
                        workspace_id,
                        fields: next,
                        changed,
                    },
                    self,
                )
                .await;
            }
            RecordCommand::Delete { workspace_id } => {
                self.live_in(&workspace_id)?;
                sink.write(RecordEvent::Deleted { workspace_id }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: RecordEvent<K>) {
        match event {
            RecordEvent::Created {
                workspace_id,
                fields,
                ..
            } => {
                self.workspace_id = workspace_id;
                self.fields = Some(fields);
            }
            RecordEvent::Updated { fields, .. } => self.fields = Some(fields),
            RecordEvent::Deleted { .. } => self.deleted = true,
        }
    }
}
