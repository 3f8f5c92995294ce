//! `/projects` (`projects:*`).

use pulsar_domain::workspace_data::ProjectFields;

use super::records::record_routes;
use crate::application::records::Projects;

record_routes! {
    resource: Projects,
    fields: ProjectFields,
    path: "/projects",
    item_path: "/projects/{id}",
    tag: "projects",
}
