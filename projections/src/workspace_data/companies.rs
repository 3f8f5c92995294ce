//! The `companies` projection: the read model `/companies` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::CompanyKind;

use super::{RecordProjection, RecordTable};
use crate::list::{Column, ListSpec};

/// The `companies` table.
#[derive(Debug)]
pub struct Companies;

/// The subscriber name handlers wait on after companies commands.
pub const NAME: &str = "companies";

impl RecordTable for Companies {
    type Kind = CompanyKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[CompanyKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] =
        &[("name", "f->>'name'"), ("domain", "f->>'domain'")];
}

/// The list `/companies` serves, its filters, includes and item shape.
pub static LIST: ListSpec = ListSpec {
    from: "companies co",
    item: concat!(
        "jsonb_build_object('id', co.id, 'workspace_id', co.workspace_id, 'name', co.name,
            'domain', co.domain, 'created_by', ",
        crate::list::with_actor_name!("co"),
        ",
            'created_at', rfc3339(co.created_at), 'updated_at', rfc3339(co.updated_at),
            'version', co.version)"
    ),

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

/// Keeps the `companies` read model.
pub type Projection = RecordProjection<Companies>;
