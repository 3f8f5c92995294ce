//! `/contacts` (`crm:*`).

use pulsar_domain::workspace_data::ContactFields;

use super::records::record_routes;
use crate::application::records::Contacts;

record_routes! {
    resource: Contacts,
    fields: ContactFields,
    path: "/contacts",
    item_path: "/contacts/{id}",
    tag: "crm",
}
