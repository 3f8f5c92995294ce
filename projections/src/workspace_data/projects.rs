//! The `projects` projection: the read model `/projects` lists and includes read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::ProjectKind;

use super::{RecordProjection, RecordTable, TAGS};

/// The `projects` table.
#[derive(Debug)]
pub struct Projects;

/// The subscriber name handlers wait on after projects commands.
pub const NAME: &str = "projects";

impl RecordTable for Projects {
    type Kind = ProjectKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[ProjectKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("name", "f->>'name'"),
        ("description", "f->>'description'"),
        ("status", "f->>'status'"),
        ("owner_id", "f->>'owner_id'"),
        ("tags", TAGS),
    ];
}

/// Keeps the `projects` read model.
pub type Projection = RecordProjection<Projects>;
