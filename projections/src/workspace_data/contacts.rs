//! The `contacts` projection: the read model `/contacts` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::ContactKind;

use super::{RecordProjection, RecordTable};

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

/// Keeps the `contacts` read model.
pub type Projection = RecordProjection<Contacts>;
