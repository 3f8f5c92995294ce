//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations as the routers are assembled, so it cannot miss a route.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pulsar API",
        description = "Scoped API keys, workspace data, webhooks, usage and audit for integrations. \
                       Errors always use the envelope `{error, message, errors?, request_id}`. \
                       Every POST, PUT, PATCH and DELETE accepts an `Idempotency-Key` header \
                       (24 h replay per principal). Authenticated responses carry \
                       `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.",
    ),
    servers((url = "/api/v1")),
    modifiers(&Security),
    tags(
        (name = "auth", description = "Sign-up, login and sessions"),
        (name = "workspaces", description = "Workspaces and their members"),
        (name = "api-keys", description = "Scoped API keys: create, rotate with grace, revoke"),
        (name = "projects", description = "Projects (`projects:*`)"),
        (name = "tasks", description = "Tasks, each in a project (`tasks:*`)"),
        (name = "crm", description = "Contacts, companies and deals (`crm:*`)"),
        (name = "documents", description = "Markdown documents (`documents:*`)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`psk_…`) or a session token (`pst_…`)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key_pair",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}
