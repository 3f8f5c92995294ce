//! The `tasks` projection: the read model `/tasks` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::{Priority, TaskKind, TaskStatus};

use super::{member_include, tags_include, RecordProjection, RecordTable, TAGS};
use crate::list::{Column, Include, ListSpec};

/// The `tasks` table.
#[derive(Debug)]
pub struct Tasks;

/// The subscriber name handlers wait on after tasks commands.
pub const NAME: &str = "tasks";

impl RecordTable for Tasks {
    type Kind = TaskKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[TaskKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("project_id", "f->>'project_id'"),
        ("title", "f->>'title'"),
        ("description", "f->>'description'"),
        ("status", "f->>'status'"),
        ("priority", "f->>'priority'"),
        ("assignee_id", "f->>'assignee_id'"),
        ("due_date", "(f->>'due_date')::date"),
        ("tags", TAGS),
    ];
}

/// The list `/tasks` serves, its filters, includes and item shape.
pub static LIST: ListSpec = ListSpec {
    from: "tasks t",
    item: concat!(
        "jsonb_build_object('id', t.id, 'workspace_id', t.workspace_id, 'project_id', t.project_id,
            'title', t.title, 'description', t.description, 'status', t.status,
            'priority', t.priority, 'assignee_id', t.assignee_id, 'due_date', to_jsonb(t.due_date),
            'tags', to_jsonb(t.tags), 'created_by', ",
        crate::list::with_actor_name!("t"),
        ",
            'created_at', rfc3339(t.created_at), 'updated_at', rfc3339(t.updated_at),
            'version', t.version)"
    ),

    id: "t.id",
    sortable: &[
        Column {
            name: "title",
            sql: "t.title",
        },
        Column {
            name: "status",
            sql: "array_position(ARRAY['todo','in_progress','done'], t.status)",
        },
        Column {
            name: "priority",
            sql: "array_position(ARRAY['low','medium','high'], t.priority)",
        },
        Column {
            name: "due_date",
            sql: "t.due_date",
        },
        Column {
            name: "created_at",
            sql: "t.created_at",
        },
        Column {
            name: "updated_at",
            sql: "t.updated_at",
        },
    ],
    nullable: &["due_date"],
    filters: &[
        Column {
            name: "status",
            sql: "t.status",
        },
        Column {
            name: "priority",
            sql: "t.priority",
        },
        Column {
            name: "project_id",
            sql: "t.project_id",
        },
        Column {
            name: "assignee_id",
            sql: "t.assignee_id",
        },
    ],
    filter_values: &[("status", TaskStatus::ALL), ("priority", Priority::ALL)],
    id_filters: &[("project_id", <pulsar_domain::workspace_data::ProjectKind as pulsar_domain::record::RecordKind>::ID_PREFIX), ("assignee_id", pulsar_domain::ids::prefix::USER)],
    contains_filters: &[Column {
        name: "tag",
        sql: "t.tags",
    }],
    created_at: Some("t.created_at"),
    updated_at: Some("t.updated_at"),
    search: Some("t.search"),
    fields: &[
        "id",
        "workspace_id",
        "project_id",
        "title",
        "description",
        "status",
        "priority",
        "assignee_id",
        "due_date",
        "tags",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ],
    includes: &[
        Include {
            name: "project",
            sql:
                "(SELECT jsonb_build_object('id', x.id, 'name', x.name, 'status', x.status)
                     FROM projects x WHERE x.id = t.project_id AND x.workspace_id = t.workspace_id)",
        },
        member_include!("assignee", "t", "assignee_id"),
        tags_include!("tasks", "t"),
    ],
    default_sort: "-created_at",
};

/// Keeps the `tasks` read model.
pub type Projection = RecordProjection<Tasks>;
