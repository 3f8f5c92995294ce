//! `/projects` (`projects:*`).

use pulsar_domain::scopes;
use pulsar_domain::workspace_data::{ProjectFields, ProjectKind, ProjectStatus};
use pulsar_projections::list::{Column, ListSpec};

use super::records::{member_include, record_routes, tags_include, Resource, Target, MEMBER};

/// The `/projects` collection.
pub struct Projects;

impl Resource for Projects {
    type Kind = ProjectKind;
    const LABEL: &'static str = "Project";
    const NAME: &'static str = pulsar_projections::workspace_data::projects::NAME;
    const SCOPE: scopes::Resource = scopes::Resource::Projects;
    const SPEC: &'static ListSpec = &SPEC;
    const ALIAS_ID: &'static str = "p.id";
    const ALIAS_WORKSPACE: &'static str = "p.workspace_id";
    const REFERENCES: &'static [(&'static str, Target)] = &[("owner_id", MEMBER)];
}

static SPEC: ListSpec = ListSpec {
    from: "projects p",
    item: "jsonb_build_object('id', p.id, 'workspace_id', p.workspace_id, 'name', p.name,
            'description', p.description, 'status', p.status, 'owner_id', p.owner_id,
            'tags', to_jsonb(p.tags), 'created_by', with_actor_name(p.created_by),
            'created_at', rfc3339(p.created_at), 'updated_at', rfc3339(p.updated_at),
            'version', p.version)",
    id: "p.id",
    sortable: &[
        Column {
            name: "name",
            sql: "p.name",
        },
        Column {
            name: "status",
            sql: "p.status",
        },
        Column {
            name: "created_at",
            sql: "p.created_at",
        },
        Column {
            name: "updated_at",
            sql: "p.updated_at",
        },
    ],
    nullable: &[],
    filters: &[
        Column {
            name: "status",
            sql: "p.status",
        },
        Column {
            name: "owner_id",
            sql: "p.owner_id",
        },
    ],
    filter_values: &[("status", ProjectStatus::ALL)],
    id_filters: &[("owner_id", pulsar_domain::ids::prefix::USER)],
    contains_filters: &[Column {
        name: "tag",
        sql: "p.tags",
    }],
    created_at: Some("p.created_at"),
    updated_at: Some("p.updated_at"),
    search: Some("p.search"),
    fields: &[
        "id",
        "workspace_id",
        "name",
        "description",
        "status",
        "owner_id",
        "tags",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ],
    includes: &[
        member_include!("owner", "p", "owner_id"),
        tags_include!("projects", "p"),
    ],
    default_sort: "-created_at",
};

record_routes! {
    resource: Projects,
    fields: ProjectFields,
    path: "/projects",
    item_path: "/projects/{id}",
    tag: "projects",
}
