//! `/contacts` (`crm:*`).

use pulsar_domain::scopes;
use pulsar_domain::workspace_data::{ContactFields, ContactKind};
use pulsar_projections::list::{Column, Include, ListSpec};

use super::records::{record_routes, Resource, Target, COMPANY};

/// The `/contacts` collection.
pub struct Contacts;

impl Resource for Contacts {
    type Kind = ContactKind;
    const LABEL: &'static str = "Contact";
    const NAME: &'static str = pulsar_projections::workspace_data::contacts::NAME;
    const SCOPE: scopes::Resource = scopes::Resource::Crm;
    const SPEC: &'static ListSpec = &SPEC;
    const ALIAS_ID: &'static str = "c.id";
    const ALIAS_WORKSPACE: &'static str = "c.workspace_id";
    const REFERENCES: &'static [(&'static str, Target)] = &[("company_id", COMPANY)];
}

static SPEC: ListSpec = ListSpec {
    from: "contacts c",
    item: "jsonb_build_object('id', c.id, 'workspace_id', c.workspace_id, 'name', c.name,
            'email', c.email, 'phone', c.phone, 'company_id', c.company_id,
            'created_by', with_actor_name(c.created_by), 'created_at', rfc3339(c.created_at),
            'updated_at', rfc3339(c.updated_at), 'version', c.version)",
    id: "c.id",
    sortable: &[
        Column {
            name: "name",
            sql: "c.name",
        },
        Column {
            name: "email",
            sql: "c.email",
        },
        Column {
            name: "created_at",
            sql: "c.created_at",
        },
        Column {
            name: "updated_at",
            sql: "c.updated_at",
        },
    ],
    nullable: &["email"],
    filters: &[
        Column {
            name: "company_id",
            sql: "c.company_id",
        },
        Column {
            name: "email",
            sql: "c.email",
        },
    ],
    filter_values: &[],
    id_filters: &[("company_id", <pulsar_domain::workspace_data::CompanyKind as pulsar_domain::record::RecordKind>::ID_PREFIX)],
    contains_filters: &[],
    created_at: Some("c.created_at"),
    updated_at: Some("c.updated_at"),
    search: Some("c.search"),
    fields: &[
        "id",
        "workspace_id",
        "name",
        "email",
        "phone",
        "company_id",
        "created_by",
        "created_at",
        "updated_at",
        "version",
    ],
    includes: &[Include {
        name: "company",
        sql: "(SELECT jsonb_build_object('id', x.id, 'name', x.name, 'domain', x.domain)
                 FROM companies x WHERE x.id = c.company_id AND x.workspace_id = c.workspace_id)",
    }],
    default_sort: "-created_at",
};

record_routes! {
    resource: Contacts,
    fields: ContactFields,
    path: "/contacts",
    item_path: "/contacts/{id}",
    tag: "crm",
}
