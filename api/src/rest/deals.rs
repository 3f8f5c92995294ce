//! `/deals` (`crm:*`): a deal may name a company and a contact of the same workspace.

use pulsar_domain::workspace_data::DealFields;

use super::records::record_routes;
use crate::application::records::Deals;

record_routes! {
    resource: Deals,
    fields: DealFields,
    path: "/deals",
    item_path: "/deals/{id}",
    tag: "crm",
}
