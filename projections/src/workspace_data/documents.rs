//! The `documents` projection: the read model `/documents` lists read (and MCP clients search).

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::DocumentKind;

use super::{RecordProjection, RecordTable, TAGS};

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

/// Keeps the `documents` read model.
pub type Projection = RecordProjection<Documents>;
