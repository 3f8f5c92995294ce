//! The `documents` projection: the read model `/documents` lists read (and MCP clients search).

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::DocumentKind;

use super::{tags_include, RecordProjection, RecordTable, TAGS};
use crate::list::{Column, ListSpec};

/// The `documents` table.
#[derive(Debug)]
pub struct Documents;

/// The subscriber name handlers wait on after documents commands.
pub const NAME: &str = "documents";

impl RecordTable for Documents {
    type Kind = DocumentKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[DocumentKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("title", "f->>'title'"),
        ("body", "f->>'body'"),
        ("tags", TAGS),
    ];
}

/// The list `/documents` serves, its filters, includes and item shape.
pub static LIST: ListSpec = ListSpec {
    from: "documents doc",
    item: concat!(
        "jsonb_build_object('id', doc.id, 'workspace_id', doc.workspace_id, 'title', doc.title,
            'body', doc.body, 'tags', to_jsonb(doc.tags), 'created_by', ",
        crate::list::with_actor_name!("doc"),
        ",
            'created_at', rfc3339(doc.created_at), 'updated_at', rfc3339(doc.updated_at),
            'version', doc.version)"
    ),

    id: "doc.id",
    sortable: &[
        Column {
            name: "title",
            sql: "doc.title",
        },
        Column {
            name: "created_at",
            sql: "doc.created_at",
        },
        Column {
            name: "updated_at",
            sql: "doc.updated_at",
        },
    ],
    nullable: &[],
    filters: &[],
    filter_values: &[],
    id_filters: &[],
    contains_filters: &[Column {
        name: "tag",
        sql: "doc.tags",
    }],
    created_at: Some("doc.created_at"),
    updated_at: Some("doc.updated_at"),
    search: Some("doc.search"),
    fields: &[
        "id",
        "workspace_id",
        "title",
        "body",
        "tags",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ],
    includes: &[tags_include!("documents", "doc")],
    default_sort: "-created_at",
};

/// Keeps the `documents` read model.
pub type Projection = RecordProjection<Documents>;
