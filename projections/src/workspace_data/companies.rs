//! The `companies` projection: the read model `/companies` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::CompanyKind;

use super::{RecordProjection, RecordTable};

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

/// Keeps the `companies` read model.
pub type Projection = RecordProjection<Companies>;
