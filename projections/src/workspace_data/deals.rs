//! The `deals` projection: the read model `/deals` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::DealKind;

use super::{RecordProjection, RecordTable};

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

/// Keeps the `deals` read model.
pub type Projection = RecordProjection<Deals>;
