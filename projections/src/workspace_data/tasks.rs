//! The `tasks` projection: the read model `/tasks` lists read.

use pulsar_domain::record::RecordKind;
use pulsar_domain::workspace_data::TaskKind;

use super::{RecordProjection, RecordTable, TAGS};

/// The `tasks` table.
#[derive(Debug)]
pub struct Tasks;

/// The subscriber name handlers wait on after tasks commands.
pub const NAME: &str = "tasks";

impl RecordTable for Tasks {
    type Kind = TaskKind;
    const NAME: &'static str = NAME;
    const TYPES: &'static [&'static str] = &[TaskKind::TYPE];
    const COLUMNS: &'static [(&'static str, &'static str)] = &[
        ("project_id", "f->>'project_id'"),
        ("title", "f->>'title'"),
        ("description", "f->>'description'"),
        ("status", "f->>'status'"),
        ("priority", "f->>'priority'"),
        ("assignee_id", "f->>'assignee_id'"),
        ("due_date", "(f->>'due_date')::date"),
        ("tags", TAGS),
    ];
}

/// Keeps the `tasks` read model.
pub type Projection = RecordProjection<Tasks>;
