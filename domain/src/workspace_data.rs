//! The kinds of workspace data (API.md "Projects, tasks, CRM, documents"): their fields,
//! the rules on them, what they reference, and how many each tier may hold.
//!
//! Each kind is a [`RecordKind`]; its aggregate is [`Record<Kind>`](crate::record::Record).
//! Fields deserialize straight from request bodies: unknown keys, wrong types and
//! unknown enum values fail there, with the field named.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::ValidationErrors;
use crate::record::{Record, RecordKind};
use crate::validate;

/// Longest name or title.
pub const NAME_MAX: usize = 200;
/// Longest description.
pub const DESCRIPTION_MAX: usize = 10_000;
/// Longest document body (markdown).
pub const BODY_MAX: usize = 200_000;
/// Most tags on one item, and the longest tag.
pub const TAGS_MAX: usize = 20;
pub const TAG_MAX: usize = 50;
/// Largest deal amount, in cents (10 trillion units).
pub const AMOUNT_MAX: i64 = 1_000_000_000_000_000;

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { #[default] $first:ident => $first_text:literal $(, $variant:ident => $text:literal)* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            #[default]
            $first,
            $($variant,)*
        }

        impl $name {
            /// Every value, as the API spells it.
            pub const ALL: &'static [&'static str] = &[$first_text $(, $text)*];
        }
    };
}

string_enum!(
    /// `active` (the default) or `archived`.
    ProjectStatus { #[default] Active => "active", Archived => "archived" }
);
string_enum!(
    /// `todo` (the default), `in_progress` or `done`.
    TaskStatus { #[default] Todo => "todo", InProgress => "in_progress", Done => "done" }
);
string_enum!(
    /// `medium` (the default), `low` or `high`.
    Priority { #[default] Medium => "medium", Low => "low", High => "high" }
);
string_enum!(
    /// `lead` (the default), `qualified`, `won` or `lost`.
    DealStage { #[default] Lead => "lead", Qualified => "qualified", Won => "won", Lost => "lost" }
);

fn default_currency() -> String {
    "USD".into()
}

/// Trims every tag, drops exact repeats, keeps the order given. A list longer than the
/// limit is left as sent, for validation to refuse: its size is judged before any work
/// that grows faster than it, and repeats never hide an oversized list.
fn normalize_tags(tags: Vec<String>) -> Vec<String> {
    if tags.len() > TAGS_MAX {
        return tags;
    }
    let mut seen = std::collections::HashSet::with_capacity(tags.len());
    tags.into_iter()
        .map(|tag| tag.trim().to_string())
        .filter(|tag| seen.insert(tag.clone()))
        .collect()
}

fn trim_opt(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn check_tags(errors: &mut ValidationErrors, tags: &[String]) {
    if tags.len() > TAGS_MAX {
        // One message, not one per tag: the answer stays small whatever was sent.
        errors.add("tags", format!("No more than {TAGS_MAX} tags are allowed."));
        return;
    }
    for (i, tag) in tags.iter().enumerate() {
        errors.check(
            &format!("tags.{i}"),
            validate::required_text("tag", tag, TAG_MAX),
        );
    }
}

fn check_opt(errors: &mut ValidationErrors, field: &str, value: &Option<String>, max: usize) {
    if let Some(value) = value {
        errors.check(field, validate::optional_text(field, value, max));
    }
}

/// A reference must have the shape of an id of its kind (`prefix_…`); whether it names a
/// live record is decided against the workspace's read models.
fn check_id(errors: &mut ValidationErrors, field: &str, prefix: &str, value: Option<&str>) {
    if let Some(value) = value {
        if !crate::ids::is_id(prefix, value) {
            errors.add(
                field,
                format!(
                    "The {field} must be an id such as {prefix}_0193a5f7c6a87f4c9d5e3b2a1c0d9e8f."
                ),
            );
        }
    }
}

use crate::ids::prefix::USER;

fn reference(field: &'static str, value: &Option<String>) -> Option<(&'static str, String)> {
    value.as_ref().map(|id| (field, id.clone()))
}

/// A project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ProjectFields {
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "Website relaunch",
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
        )
    )]
    pub name: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 10000,
            pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
        )
    )]
    pub description: Option<String>,
    #[serde(default)]
    pub status: ProjectStatus,
    /// A member of the workspace.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^usr_[0-9a-f]{32}$"))]
    pub owner_id: Option<String>,
    /// At most 20, each 1 to 50 characters; repeats are dropped.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<Tag>))]
    pub tags: Vec<String>,
}

/// A task, always in a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TaskFields {
    /// A project of the workspace.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^proj_[0-9a-f]{32}$"))]
    pub project_id: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "Write the launch post",
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
        )
    )]
    pub title: String,
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 10000,
            pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
        )
    )]
    pub description: Option<String>,
    #[serde(default)]
    pub status: TaskStatus,
    #[serde(default)]
    pub priority: Priority,
    /// A member of the workspace.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^usr_[0-9a-f]{32}$"))]
    pub assignee_id: Option<String>,
    /// `YYYY-MM-DD`, in the years 1900 to 2999.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date, example = "2026-12-01",
        pattern = r"^(19[0-9]{2}|2[0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$"))]
    pub due_date: Option<NaiveDate>,
    /// At most 20, each 1 to 50 characters; repeats are dropped.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<Tag>))]
    pub tags: Vec<String>,
}

/// A CRM contact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ContactFields {
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "Ada Lovelace",
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
        )
    )]
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254, pattern = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"))]
    pub email: Option<String>,
    /// Digits with `+ - ( ) .` and spaces; 5 to 20 digits.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "+44 20 7946 0958",
            max_length = 32,
            pattern = r"^[+\-(). ]*([0-9][+\-(). ]*){5,20}$"
        )
    )]
    pub phone: Option<String>,
    /// A company of the workspace.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^comp_[0-9a-f]{32}$"))]
    pub company_id: Option<String>,
}

/// A CRM company.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CompanyFields {
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "Analytical Engines Ltd",
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
        )
    )]
    pub name: String,
    /// A host name with a dot.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "engines.example",
            max_length = 253,
            pattern = r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
        )
    )]
    pub domain: Option<String>,
}

/// A CRM deal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DealFields {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
        )
    )]
    pub name: String,
    /// In the currency's minor unit; 0 or more.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 1_000_000_000_000_000i64)
    )]
    pub amount_cents: i64,
    /// ISO 4217, e.g. `EUR`; default `USD`.
    #[serde(default = "default_currency")]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z]{3}$", example = "EUR")
    )]
    pub currency: String,
    #[serde(default)]
    pub stage: DealStage,
    /// A company of the workspace.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^comp_[0-9a-f]{32}$"))]
    pub company_id: Option<String>,
    /// A contact of the workspace.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^cont_[0-9a-f]{32}$"))]
    pub contact_id: Option<String>,
}

/// A company document (markdown), the kind MCP clients read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DocumentFields {
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 200,
            pattern = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$"
        )
    )]
    pub title: String,
    /// Markdown.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 200000,
            pattern = r"^[^\u0000-\u0008\u000B-\u001F\u007F-\u009F]*$"
        )
    )]
    pub body: String,
    /// At most 20, each 1 to 50 characters; repeats are dropped.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 20, value_type = Vec<Tag>))]
    pub tags: Vec<String>,
}

/// One tag in the document: 1 to 50 characters of one line (tags are plain strings;
/// this type only describes them).
#[cfg(feature = "openapi")]
#[derive(Debug)]
pub struct Tag;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .min_length(Some(1))
            .max_length(Some(TAG_MAX))
            .pattern(Some(validate::LINE_PATTERN))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Tag {}

/// Declares a kind's marker type and its aggregate's name.
macro_rules! kind {
    ($(#[$meta:meta])* $kind:ident, $alias:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct $kind;

        $(#[$meta])*
        pub type $alias = Record<$kind>;
    };
}

kind!(/// Projects (`projects:*`).
    ProjectKind, Project);
kind!(/// Tasks (`tasks:*`).
    TaskKind, Task);
kind!(/// Contacts (`crm:*`).
    ContactKind, Contact);
kind!(/// Companies (`crm:*`).
    CompanyKind, Company);
kind!(/// Deals (`crm:*`).
    DealKind, Deal);
kind!(/// Documents (`documents:*`).
    DocumentKind, Document);

impl RecordKind for ProjectKind {
    const TYPE: &'static str = "Project";
    const ID_PREFIX: &'static str = "proj";
    const NOUN: &'static str = "project";
    type Fields = ProjectFields;

    fn normalize(mut f: ProjectFields) -> ProjectFields {
        f.name = f.name.trim().to_string();
        f.description = trim_opt(f.description);
        f.tags = normalize_tags(f.tags);
        f
    }

    fn validate(f: &ProjectFields) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        errors.check("name", validate::required_text("name", &f.name, NAME_MAX));
        check_opt(&mut errors, "description", &f.description, DESCRIPTION_MAX);
        check_id(&mut errors, "owner_id", USER, f.owner_id.as_deref());
        check_tags(&mut errors, &f.tags);
        errors
    }

    fn references(f: &ProjectFields) -> Vec<(&'static str, String)> {
        reference("owner_id", &f.owner_id).into_iter().collect()
    }
}

impl RecordKind for TaskKind {
    const TYPE: &'static str = "Task";
    const ID_PREFIX: &'static str = "task";
    const NOUN: &'static str = "task";
    type Fields = TaskFields;

    fn normalize(mut f: TaskFields) -> TaskFields {
        f.project_id = f.project_id.trim().to_string();
        f.title = f.title.trim().to_string();
        f.description = trim_opt(f.description);
        f.tags = normalize_tags(f.tags);
        f
    }

    fn validate(f: &TaskFields) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        if f.project_id.is_empty() {
            errors.add("project_id", "The project_id field is required.");
        } else {
            check_id(
                &mut errors,
                "project_id",
                ProjectKind::ID_PREFIX,
                Some(&f.project_id),
            );
        }
        errors.check(
            "title",
            validate::required_text("title", &f.title, NAME_MAX),
        );
        check_opt(&mut errors, "description", &f.description, DESCRIPTION_MAX);
        check_id(&mut errors, "assignee_id", USER, f.assignee_id.as_deref());
        if let Some(due) = f.due_date {
            let year = chrono::Datelike::year(&due);
            if !(1900..=2999).contains(&year) {
                errors.add(
                    "due_date",
                    "The due_date must be a date between 1900 and 2999.",
                );
            }
        }
        check_tags(&mut errors, &f.tags);
        errors
    }

    fn references(f: &TaskFields) -> Vec<(&'static str, String)> {
        let mut refs = vec![("project_id", f.project_id.clone())];
        refs.extend(reference("assignee_id", &f.assignee_id));
        refs
    }
}

/// A phone number as people write them: digits with `+ - ( ) .` and spaces, 5 to 20 digits.
fn phone(value: &str) -> Result<(), String> {
    let digits = value.bytes().filter(u8::is_ascii_digit).count();
    let chars_ok = value
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'(' | b')' | b'.' | b' '));
    if chars_ok && (5..=20).contains(&digits) && value.len() <= 32 {
        Ok(())
    } else {
        Err("The phone must be a phone number such as +44 20 7946 0958.".into())
    }
}

/// A host name: dot-separated labels of letters, digits and dashes, with a dot.
fn domain(value: &str) -> Result<(), String> {
    if validate::host_name(value) {
        Ok(())
    } else {
        Err("The domain must be a host name such as example.com.".into())
    }
}

impl RecordKind for ContactKind {
    const TYPE: &'static str = "Contact";
    const ID_PREFIX: &'static str = "cont";
    const NOUN: &'static str = "contact";
    type Fields = ContactFields;

    fn normalize(mut f: ContactFields) -> ContactFields {
        f.name = f.name.trim().to_string();
        f.email = trim_opt(f.email).map(|e| validate::normalize_email(&e));
        f.phone = trim_opt(f.phone);
        f
    }

    fn validate(f: &ContactFields) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        errors.check("name", validate::required_text("name", &f.name, NAME_MAX));
        if let Some(email) = &f.email {
            errors.check("email", validate::email(email));
        }
        if let Some(value) = &f.phone {
            errors.check("phone", phone(value));
        }
        check_id(
            &mut errors,
            "company_id",
            CompanyKind::ID_PREFIX,
            f.company_id.as_deref(),
        );
        errors
    }

    fn references(f: &ContactFields) -> Vec<(&'static str, String)> {
        reference("company_id", &f.company_id).into_iter().collect()
    }
}

impl RecordKind for CompanyKind {
    const TYPE: &'static str = "Company";
    const ID_PREFIX: &'static str = "comp";
    const NOUN: &'static str = "company";
    type Fields = CompanyFields;

    fn normalize(mut f: CompanyFields) -> CompanyFields {
        f.name = f.name.trim().to_string();
        f.domain = trim_opt(f.domain).map(|d| d.to_ascii_lowercase());
        f
    }

    fn validate(f: &CompanyFields) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        errors.check("name", validate::required_text("name", &f.name, NAME_MAX));
        if let Some(value) = &f.domain {
            errors.check("domain", domain(value));
        }
        errors
    }

    fn references(_: &CompanyFields) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

impl RecordKind for DealKind {
    const TYPE: &'static str = "Deal";
    const ID_PREFIX: &'static str = "deal";
    const NOUN: &'static str = "deal";
    type Fields = DealFields;

    fn normalize(mut f: DealFields) -> DealFields {
        f.name = f.name.trim().to_string();
        f.currency = f.currency.trim().to_ascii_uppercase();
        f
    }

    fn validate(f: &DealFields) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        errors.check("name", validate::required_text("name", &f.name, NAME_MAX));
        if !(0..=AMOUNT_MAX).contains(&f.amount_cents) {
            errors.add(
                "amount_cents",
                format!("The amount_cents must be from 0 to {AMOUNT_MAX}."),
            );
        }
        if f.currency.len() != 3 || !f.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.add(
                "currency",
                "The currency must be an ISO 4217 code such as EUR.",
            );
        }
        check_id(
            &mut errors,
            "company_id",
            CompanyKind::ID_PREFIX,
            f.company_id.as_deref(),
        );
        check_id(
            &mut errors,
            "contact_id",
            ContactKind::ID_PREFIX,
            f.contact_id.as_deref(),
        );
        errors
    }

    fn references(f: &DealFields) -> Vec<(&'static str, String)> {
        reference("company_id", &f.company_id)
            .into_iter()
            .chain(reference("contact_id", &f.contact_id))
            .collect()
    }
}

impl RecordKind for DocumentKind {
    const TYPE: &'static str = "Document";
    const ID_PREFIX: &'static str = "doc";
    const NOUN: &'static str = "document";
    type Fields = DocumentFields;

    fn normalize(mut f: DocumentFields) -> DocumentFields {
        f.title = f.title.trim().to_string();
        f.tags = normalize_tags(f.tags);
        f
    }

    fn validate(f: &DocumentFields) -> ValidationErrors {
        let mut errors = ValidationErrors::new();
        errors.check(
            "title",
            validate::required_text("title", &f.title, NAME_MAX),
        );
        errors.check("body", validate::optional_text("body", &f.body, BODY_MAX));
        check_tags(&mut errors, &f.tags);
        errors
    }

    fn references(_: &DocumentFields) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use cqrs_es::test::TestFramework;
    use serde_json::json;

    use super::*;
    use crate::record::{RecordCommand, RecordEvent};
    use crate::{Actor, DomainError};

    type TaskTest = TestFramework<Task>;

    fn task(project_id: &str) -> TaskFields {
        serde_json::from_value(
            json!({"project_id": project_id, "title": "  Ship it  ", "tags": ["a", " a", "b"]}),
        )
        .expect("valid task")
    }

    fn live(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
        pairs
            .iter()
            .map(|(f, id)| (f.to_string(), id.to_string()))
            .collect()
    }

    fn created() -> RecordEvent<TaskKind> {
        RecordEvent::Created {
            workspace_id: "ws_1".into(),
            fields: TaskKind::normalize(task("proj_00000000000000000000000000000001")),
            created_by: Actor::user("usr_1"),
        }
    }

    #[tokio::test]
    async fn creation_normalizes_and_defaults() {
        let fields = TaskKind::normalize(task("proj_00000000000000000000000000000001"));
        assert_eq!(fields.title, "Ship it");
        assert_eq!(fields.tags, vec!["a", "b"]);
        assert_eq!(fields.status, TaskStatus::Todo);
        assert_eq!(fields.priority, Priority::Medium);
        TaskTest::with(())
            .given_no_previous_events()
            .when_async(RecordCommand::Create {
                workspace_id: "ws_1".into(),
                fields: task("proj_00000000000000000000000000000001"),
                created_by: Actor::user("usr_1"),
                live: live(&[("project_id", "proj_00000000000000000000000000000001")]),
            })
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn a_reference_must_be_live_in_the_workspace() {
        let result = TaskTest::with(())
            .given_no_previous_events()
            .when_async(RecordCommand::Create {
                workspace_id: "ws_1".into(),
                fields: task("proj_000000000000000000000000000000ff"),
                created_by: Actor::user("usr_1"),
                live: live(&[("project_id", "proj_00000000000000000000000000000001")]),
            })
            .await
            .inspect_result();
        let Err(DomainError::Validation(errors)) = result else {
            panic!("expected a validation error, got {result:?}");
        };
        assert!(errors.fields().contains_key("project_id"));
    }

    #[tokio::test]
    async fn update_carries_state_and_changed_fields() {
        let mut expected = TaskKind::normalize(task("proj_00000000000000000000000000000001"));
        expected.status = TaskStatus::Done;
        expected.due_date = None;
        TaskTest::with(())
            .given(vec![created()])
            .when_async(RecordCommand::Update {
                workspace_id: "ws_1".into(),
                patch: json!({"status": "done", "description": null})
                    .as_object()
                    .cloned()
                    .expect("object"),
                live: BTreeSet::new(),
            })
            .await
            .then_expect_events(vec![RecordEvent::Updated {
                workspace_id: "ws_1".into(),
                fields: expected,
                changed: vec!["status".into()],
            }]);
    }

    #[tokio::test]
    async fn an_unchanged_patch_writes_nothing_and_stale_references_do_not_block() {
        // The project was deleted since; changing the title must still work.
        TaskTest::with(())
            .given(vec![created()])
            .when_async(RecordCommand::Update {
                workspace_id: "ws_1".into(),
                patch: json!({"title": "Ship it"})
                    .as_object()
                    .cloned()
                    .expect("object"),
                live: BTreeSet::new(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn bad_patches_are_refused() {
        for patch in [
            json!({"title": null}),
            json!({"title": ""}),
            json!({"status": "blocked"}),
            json!({"unknown": 1}),
            json!({"due_date": "2026-13-01"}),
            json!({"project_id": "proj_00000000000000000000000000000002"}),
            json!({"tags": (0..21).map(|i| i.to_string()).collect::<Vec<_>>()}),
            // Repeats do not hide an oversized list.
            json!({"tags": vec!["same"; 21]}),
        ] {
            let result = TaskTest::with(())
                .given(vec![created()])
                .when_async(RecordCommand::Update {
                    workspace_id: "ws_1".into(),
                    patch: patch.as_object().cloned().expect("object"),
                    live: BTreeSet::new(),
                })
                .await
                .inspect_result();
            assert!(
                matches!(result, Err(DomainError::Validation(_))),
                "{patch} gave {result:?}"
            );
        }
    }

    #[test]
    fn an_oversized_tag_list_gets_one_message_whatever_its_size() {
        let tags: Vec<String> = (0..60_000).map(|i| format!("tag{i}")).collect();
        let fields: DocumentFields =
            serde_json::from_value(json!({"title": "t", "tags": tags})).expect("fields");
        let errors = DocumentKind::validate(&DocumentKind::normalize(fields));
        assert_eq!(
            errors.fields().get("tags").map(Vec::len),
            Some(1),
            "{errors:?}"
        );
        assert_eq!(errors.fields().len(), 1, "no message per tag: {errors:?}");
    }

    #[tokio::test]
    async fn another_workspace_and_deleted_records_are_not_found() {
        TaskTest::with(())
            .given(vec![created()])
            .when_async(RecordCommand::Delete {
                workspace_id: "ws_2".into(),
            })
            .await
            .then_expect_error(DomainError::NotFound("task"));
        TaskTest::with(())
            .given(vec![
                created(),
                RecordEvent::Deleted {
                    workspace_id: "ws_1".into(),
                },
            ])
            .when_async(RecordCommand::Update {
                workspace_id: "ws_1".into(),
                patch: json!({"title": "x"}).as_object().cloned().expect("object"),
                live: BTreeSet::new(),
            })
            .await
            .then_expect_error(DomainError::NotFound("task"));
    }

    #[test]
    fn field_rules() {
        let deal: DealFields =
            serde_json::from_value(json!({"name": "Big", "amount_cents": -1, "currency": "euro"}))
                .expect("typed");
        let errors = DealKind::validate(&DealKind::normalize(deal));
        assert!(errors.fields().contains_key("amount_cents"));
        assert!(errors.fields().contains_key("currency"));
        let contact: ContactFields = serde_json::from_value(
            json!({"name": "Ada", "email": "not-an-email", "phone": "call me"}),
        )
        .expect("typed");
        let errors = ContactKind::validate(&ContactKind::normalize(contact));
        assert!(errors.fields().contains_key("email"));
        assert!(errors.fields().contains_key("phone"));
        let company: CompanyFields =
            serde_json::from_value(json!({"name": "Acme", "domain": "ACME.example"}))
                .expect("typed");
        let company = CompanyKind::normalize(company);
        assert_eq!(company.domain.as_deref(), Some("acme.example"));
        assert!(CompanyKind::validate(&company).is_empty());
        assert!(
            serde_json::from_value::<ProjectFields>(json!({"name": "x", "status": "open"}))
                .is_err()
        );
    }
}
