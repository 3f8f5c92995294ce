//! `/tasks` (`tasks:*`): every task belongs to a project of the same workspace.

use pulsar_domain::workspace_data::TaskFields;

use super::records::record_routes;
use crate::application::records::Tasks;

record_routes! {
    resource: Tasks,
    fields: TaskFields,
    path: "/tasks",
    item_path: "/tasks/{id}",
    tag: "tasks",
}
