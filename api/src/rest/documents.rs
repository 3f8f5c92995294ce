//! `/documents` (`documents:*`): the workspace's markdown documents.

use pulsar_domain::scopes;
use pulsar_domain::workspace_data::{DocumentFields, DocumentKind};
use pulsar_projections::list::{Column, ListSpec};

use super::records::{record_routes, tags_include, Resource, Target};

/// The `/documents` collection.
pub struct Documents;

impl Resource for Documents {
    type Kind = DocumentKind;
    const LABEL: &'static str = "Document";
    const NAME: &'static str = pulsar_projections::workspace_data::documents::NAME;
    const SCOPE: scopes::Resource = scopes::Resource::Documents;
    const SPEC: &'static ListSpec = &SPEC;
    const ALIAS_ID: &'static str = "doc.id";
    const ALIAS_WORKSPACE: &'static str = "doc.workspace_id";
    const REFERENCES: &'static [(&'static str, Target)] = &[];
}

static SPEC: ListSpec = ListSpec {
    from: "documents doc",
    item: "jsonb_build_object('id', doc.id, 'workspace_id', doc.workspace_id, 'title', doc.title,
            'body', doc.body, 'tags', to_jsonb(doc.tags), 'created_by', with_actor_name(doc.created_by),
            'created_at', rfc3339(doc.created_at), 'updated_at', rfc3339(doc.updated_at),
            'version', doc.version)",
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

record_routes! {
    resource: Documents,
    fields: DocumentFields,
    path: "/documents",
    item_path: "/documents/{id}",
    tag: "documents",
}
