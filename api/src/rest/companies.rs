//! `/companies` (`crm:*`).

use pulsar_domain::scopes;
use pulsar_domain::workspace_data::{CompanyFields, CompanyKind};
use pulsar_projections::list::{Column, ListSpec};

use super::records::{record_routes, Resource, Target};

/// The `/companies` collection.
pub struct Companies;

impl Resource for Companies {
    type Kind = CompanyKind;
    const LABEL: &'static str = "Company";
    const NAME: &'static str = pulsar_projections::workspace_data::companies::NAME;
    const SCOPE: scopes::Resource = scopes::Resource::Crm;
    const SPEC: &'static ListSpec = &SPEC;
    const ALIAS_ID: &'static str = "co.id";
    const ALIAS_WORKSPACE: &'static str = "co.workspace_id";
    const REFERENCES: &'static [(&'static str, Target)] = &[];
}

static SPEC: ListSpec = ListSpec {
    from: "companies co",
    item: "jsonb_build_object('id', co.id, 'workspace_id', co.workspace_id, 'name', co.name,
            'domain', co.domain, 'created_by', with_actor_name(co.created_by),
            'created_at', rfc3339(co.created_at), 'updated_at', rfc3339(co.updated_at),
            'version', co.version)",
    id: "co.id",
    sortable: &[
        Column {
            name: "name",
            sql: "co.name",
        },
        Column {
            name: "domain",
            sql: "co.domain",
        },
        Column {
            name: "created_at",
            sql: "co.created_at",
        },
        Column {
            name: "updated_at",
            sql: "co.updated_at",
        },
    ],
    nullable: &["domain"],
    filters: &[Column {
        name: "domain",
        sql: "co.domain",
    }],
    filter_values: &[],
    id_filters: &[],
    contains_filters: &[],
    created_at: Some("co.created_at"),
    updated_at: Some("co.updated_at"),
    search: Some("co.search"),
    fields: &[
        "id",
        "workspace_id",
        "name",
        "domain",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ],
    includes: &[],
    default_sort: "-created_at",
};

record_routes! {
    resource: Companies,
    fields: CompanyFields,
    path: "/companies",
    item_path: "/companies/{id}",
    tag: "crm",
}
