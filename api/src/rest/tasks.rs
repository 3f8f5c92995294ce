//! `/tasks` (`tasks:*`): every task belongs to a project of the same workspace.

use pulsar_domain::scopes;
use pulsar_domain::workspace_data::{Priority, TaskFields, TaskKind, TaskStatus};
use pulsar_projections::list::{Column, Include, ListSpec};

use super::records::{
    member_include, record_routes, tags_include, Resource, Target, MEMBER, PROJECT,
};

/// The `/tasks` collection.
pub struct Tasks;

impl Resource for Tasks {
    type Kind = TaskKind;
    const LABEL: &'static str = "Task";
    const NAME: &'static str = pulsar_projections::workspace_data::tasks::NAME;
    const SCOPE: scopes::Resource = scopes::Resource::Tasks;
    const SPEC: &'static ListSpec = &SPEC;
    const ALIAS_ID: &'static str = "t.id";
    const ALIAS_WORKSPACE: &'static str = "t.workspace_id";
    const REFERENCES: &'static [(&'static str, Target)] =
        &[("project_id", PROJECT), ("assignee_id", MEMBER)];
}

static SPEC: ListSpec = ListSpec {
    from: "tasks t",
    item:
        "jsonb_build_object('id', t.id, 'workspace_id', t.workspace_id, 'project_id', t.project_id,
            'title', t.title, 'description', t.description, 'status', t.status,
            'priority', t.priority, 'assignee_id', t.assignee_id, 'due_date', to_jsonb(t.due_date),
            'tags', to_jsonb(t.tags), 'created_by', with_actor_name(t.created_by),
            'created_at', rfc3339(t.created_at), 'updated_at', rfc3339(t.updated_at),
            'version', t.version)",
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

record_routes! {
    resource: Tasks,
    fields: TaskFields,
    path: "/tasks",
    item_path: "/tasks/{id}",
    tag: "tasks",
}
