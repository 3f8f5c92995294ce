//! `/companies` (`crm:*`).

use pulsar_domain::workspace_data::CompanyFields;

use super::records::record_routes;
use crate::application::records::Companies;

record_routes! {
    resource: Companies,
    fields: CompanyFields,
    path: "/companies",
    item_path: "/companies/{id}",
    tag: "crm",
}
