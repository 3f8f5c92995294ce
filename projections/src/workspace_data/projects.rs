//! The `projects` projection: the read model `/projects` lists and includes read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::{ProjectKind, ProjectStatus};

use super::{member_include, tags_include, RecordProjection, RecordTable, TAGS};
use crate::list::{Column, ListSpec};

/// The `projects` table.
#[derive(Debug)]
pub struct Projects;

/// The subscriber name handlers wait on after projects commands.
pub const NAME: &str = "projects";

impl RecordTable for Projects {
    type Kind = ProjectKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[ProjectKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("name", "f->>'name'"),
        ("description", "f->>'description'"),
        ("status", "f->>'status'"),
        ("owner_id", "f->>'owner_id'"),
        ("tags", TAGS),
    ];
}

/// The list `/projects` serves, its filters, includes and item shape.
pub static LIST: ListSpec = ListSpec {
    from: "projects p",
    item: concat!(
        "jsonb_build_object('id', p.id, 'workspace_id', p.workspace_id, 'name', p.name,
            'description', p.description, 'status', p.status, 'owner_id', p.owner_id,
            'tags', to_jsonb(p.tags), 'created_by', ",
        crate::list::with_actor_name!("p"),
        ",
            'created_at', rfc3339(p.created_at), 'updated_at', rfc3339(p.updated_at),
            'version', p.version)"
    ),

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

/// Keeps the `projects` read model.
pub type Projection = RecordProjection<Projects>;
