//! `/documents` (`documents:*`): the workspace's markdown documents.

use pulsar_domain::workspace_data::DocumentFields;

use super::records::record_routes;
use crate::application::records::Documents;

record_routes! {
    resource: Documents,
    fields: DocumentFields,
    path: "/documents",
    item_path: "/documents/{id}",
    tag: "documents",
}
