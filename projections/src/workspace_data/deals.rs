//! The `deals` projection: the read model `/deals` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::{DealKind, DealStage};

use super::{RecordProjection, RecordTable};
use crate::list::{Column, Include, ListSpec};

/// The `deals` table.
#[derive(Debug)]
pub struct Deals;

/// The subscriber name handlers wait on after deals commands.
pub const NAME: &str = "deals";

impl RecordTable for Deals {
    type Kind = DealKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[DealKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("name", "f->>'name'"),
        ("amount_cents", "(f->>'amount_cents')::bigint"),
        ("currency", "f->>'currency'"),
        ("stage", "f->>'stage'"),
        ("company_id", "f->>'company_id'"),
        ("contact_id", "f->>'contact_id'"),
    ];
}

/// The list `/deals` serves, its filters, includes and item shape.
pub static LIST: ListSpec = ListSpec {
    from: "deals d",
    item: concat!(
        "jsonb_build_object('id', d.id, 'workspace_id', d.workspace_id, 'name', d.name,
            'amount_cents', d.amount_cents, 'currency', d.currency, 'stage', d.stage,
            'company_id', d.company_id, 'contact_id', d.contact_id, 'created_by', ",
        crate::list::with_actor_name!("d"),
        ",
            'created_at', rfc3339(d.created_at), 'updated_at', rfc3339(d.updated_at),
            'version', d.version)"
    ),

    id: "d.id",
    sortable: &[
        Column { name: "name", sql: "d.name" },
        Column { name: "amount_cents", sql: "d.amount_cents" },
        Column { name: "stage", sql: "array_position(ARRAY['lead','qualified','won','lost'], d.stage)" },
        Column { name: "created_at", sql: "d.created_at" },
        Column { name: "updated_at", sql: "d.updated_at" },
    ],
    nullable: &[],
    filters: &[
        Column { name: "stage", sql: "d.stage" },
        Column { name: "currency", sql: "d.currency" },
        Column { name: "company_id", sql: "d.company_id" },
        Column { name: "contact_id", sql: "d.contact_id" },
    ],
    filter_values: &[("stage", DealStage::ALL)],
    id_filters: &[("company_id", <pulsar_domain::workspace_data::CompanyKind as pulsar_domain::record::RecordKind>::ID_PREFIX), ("contact_id", <pulsar_domain::workspace_data::ContactKind as pulsar_domain::record::RecordKind>::ID_PREFIX)],
    contains_filters: &[],
    created_at: Some("d.created_at"),
    updated_at: Some("d.updated_at"),
    search: Some("d.search"),
    fields: &[
        "id", "workspace_id", "name", "amount_cents", "currency", "stage", "company_id",
        "contact_id", "created_by", "created_at", "updated_at", "version",
    ],
    includes: &[
        Include {
            name: "company",
            sql: "(SELECT jsonb_build_object('id', x.id, 'name', x.name, 'domain', x.domain)
                     FROM companies x WHERE x.id = d.company_id AND x.workspace_id = d.workspace_id)",
        },
        Include {
            name: "contact",
            sql: "(SELECT jsonb_build_object('id', x.id, 'name', x.name, 'email', x.email)
                     FROM contacts x WHERE x.id = d.contact_id AND x.workspace_id = d.workspace_id)",
        },
    ],
    default_sort: "-created_at",
};

/// Keeps the `deals` read model.
pub type Projection = RecordProjection<Deals>;
