//! The `contacts` projection: the read model `/contacts` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::ContactKind;

use super::{RecordProjection, RecordTable};
use crate::list::{Column, Include, ListSpec};

/// The `contacts` table.
#[derive(Debug)]
pub struct Contacts;

/// The subscriber name handlers wait on after contacts commands.
pub const NAME: &str = "contacts";

impl RecordTable for Contacts {
    type Kind = ContactKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[ContactKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("name", "f->>'name'"),
        ("email", "f->>'email'"),
        ("phone", "f->>'phone'"),
        ("company_id", "f->>'company_id'"),
    ];
}

/// The list `/contacts` serves, its filters, includes and item shape.
pub static LIST: ListSpec = ListSpec {
    from: "contacts c",
    item: concat!(
        "jsonb_build_object('id', c.id, 'workspace_id', c.workspace_id, 'name', c.name,
            'email', c.email, 'phone', c.phone, 'company_id', c.company_id,
            'created_by', ",
        crate::list::with_actor_name!("c"),
        ", 'created_at', rfc3339(c.created_at),
            'updated_at', rfc3339(c.updated_at), 'version', c.version)"
    ),

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

/// Keeps the `contacts` read model.
pub type Projection = RecordProjection<Contacts>;
