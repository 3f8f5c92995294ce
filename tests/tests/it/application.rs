//! The application layer driven directly, with no HTTP: what an MCP tool, a CLI
//! command or a worker does. Each kind of use case once: identity, workspaces and
//! members, API keys, workspace data and its lists.

use pulsar_api::application::authentication::{self, Credential};
use pulsar_api::application::records::{self, Projects, Tasks};
use pulsar_api::application::{
    api_keys, identity, workspaces, Auth, Error, Principal, RequestContext,
};
use pulsar_api::AppState;
use pulsar_domain::api_key::{ApiKeyPatch, ApiKeySettings};
use pulsar_domain::keys;
use pulsar_domain::scopes::Role;
use pulsar_domain::workspace::Tier;
use pulsar_domain::workspace_data::{ProjectFields, TaskFields};
use pulsar_projections::list::ListRequest;
use pulsar_tests::TestApp;
use serde_json::json;

fn context() -> RequestContext {
    RequestContext::local("req_application_test")
}

async fn principal(state: &AppState, token: &str) -> Principal {
    authentication::authenticate(state, Credential::Session(token), None, context())
        .await
        .expect("a live session")
        .0
}

async fn caller(state: &AppState, token: &str) -> Auth {
    authentication::caller(state, principal(state, token).await)
        .await
        .expect("acts in its primary workspace")
}

#[tokio::test]
async fn every_kind_of_use_case_runs_without_http() {
    let app = TestApp::start().await;
    let state = &app.runtime.state;

    // Identity: sign-up and login give sessions.
    let owner = identity::sign_up(
        state,
        &context(),
        identity::Registration {
            email: "direct@application.example".into(),
            password: "correct horse battery staple".into(),
            name: Some("Direct".into()),
            workspace_name: "Direct".into(),
        },
    )
    .await
    .expect("signed up");
    let workspace_id = owner
        .primary_workspace
        .as_ref()
        .expect("workspace")
        .id
        .clone();
    let login = identity::log_in(
        state,
        "DIRECT@application.example",
        "correct horse battery staple".into(),
    )
    .await
    .expect("logged in");
    assert_eq!(login.principal.id, owner.principal.id);
    assert!(matches!(
        identity::log_in(
            state,
            "direct@application.example",
            "wrong password!".into()
        )
        .await,
        Err(Error::Unauthorized(_))
    ));
    let auth = caller(state, &owner.token).await;
    assert_eq!(auth.workspace_id, workspace_id);

    // Workspaces and members.
    let me = principal(state, &owner.token).await;
    let changed = workspaces::update(
        state,
        &me,
        &workspace_id,
        workspaces::WorkspaceChange {
            name: Some("Direct 2".into()),
            tier: Some(Tier::Pro),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("updated");
    assert_eq!(changed["tier"], "pro");
    let other = identity::sign_up(
        state,
        &context(),
        identity::Registration {
            email: "other@application.example".into(),
            password: "correct horse battery staple".into(),
            name: None,
            workspace_name: "Other".into(),
        },
    )
    .await
    .expect("signed up");
    let member = workspaces::add_member(
        state,
        &me,
        &workspace_id,
        &other.principal.email.clone().expect("email"),
        Role::Viewer,
    )
    .await
    .expect("added");
    assert_eq!(member["role"], "viewer");
    let them = principal(state, &other.token).await;
    assert!(
        matches!(
            workspaces::update(
                state,
                &them,
                &workspace_id,
                workspaces::WorkspaceChange {
                    name: Some("Mine".into()),
                    ..Default::default()
                },
                None
            )
            .await,
            Err(Error::AccessDenied(_))
        ),
        "a viewer cannot rename it"
    );
    let page = workspaces::members(
        state,
        &me,
        &workspace_id,
        &ListRequest::parse(&pulsar_projections::identity::MEMBERS, &[], &[]).expect("request"),
    )
    .await
    .expect("members");
    assert_eq!(page.total, 2);

    // API keys: create, change, rotate, revoke; the secret verifies until revoked.
    let issued = api_keys::create(
        state,
        &auth,
        ApiKeySettings {
            name: "direct".into(),
            scopes: vec!["projects:*".into(), "tasks:read".into()],
            ip_allowlist: vec![],
            expires_at: None,
            max_age_days: None,
            rate_limit_tier: None,
        },
    )
    .await
    .expect("issued");
    let key_id = issued.item["id"].as_str().expect("id").to_string();
    let full = issued.key.full();
    let verified = authentication::verify_key(
        state,
        keys::parse_full(&full).expect("shape"),
        [127, 0, 0, 1].into(),
    );
    assert!(verified.is_ok());
    let patched = api_keys::update(
        state,
        &auth,
        &key_id,
        ApiKeyPatch {
            name: Some("direct 2".into()),
            ..Default::default()
        },
        None,
    )
    .await
    .expect("patched");
    assert_eq!(patched["name"], "direct 2");
    let (rotated, _) = api_keys::rotate(state, &auth, &key_id, Some(0))
        .await
        .expect("rotated");
    let new_id = rotated.item["id"].as_str().expect("id").to_string();
    api_keys::revoke(state, &auth, &new_id, None)
        .await
        .expect("revoked");
    let history = api_keys::history(state, &auth, &key_id)
        .await
        .expect("history");
    // With no grace, upkeep may already have recorded the old key's end.
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert!(
        types == ["ApiKeyCreated", "ApiKeyUpdated", "ApiKeyRotated"]
            || types
                == [
                    "ApiKeyCreated",
                    "ApiKeyUpdated",
                    "ApiKeyRotated",
                    "ApiKeyExpiredByRotation"
                ],
        "{types:?}"
    );

    // Workspace data through the generic use cases, and a key's authority.
    let project = records::create::<Projects>(
        state,
        &auth,
        serde_json::from_value::<ProjectFields>(json!({"name": "Direct"})).expect("fields"),
    )
    .await
    .expect("created");
    let project_id = project["id"].as_str().expect("id").to_string();
    let task = records::create::<Tasks>(
        state,
        &auth,
        serde_json::from_value::<TaskFields>(json!({"project_id": project_id, "title": "Do"}))
            .expect("fields"),
    )
    .await
    .expect("created");
    let task_id = task["id"].as_str().expect("id").to_string();
    let updated = records::update::<Tasks>(
        state,
        &auth,
        &task_id,
        json!({"status": "done"})
            .as_object()
            .cloned()
            .expect("object"),
        Some(1),
    )
    .await
    .expect("updated");
    assert_eq!(updated["status"], "done");
    assert!(matches!(
        records::update::<Tasks>(
            state,
            &auth,
            &task_id,
            json!({"title": "x"}).as_object().cloned().expect("object"),
            Some(1)
        )
        .await,
        Err(Error::PreconditionFailed)
    ));
    let request = ListRequest::parse(
        <Tasks as records::Resource>::SPEC,
        &[("status".into(), "done".into())],
        &[],
    )
    .expect("request");
    let page = records::list::<Tasks>(state, &auth, &request)
        .await
        .expect("list");
    assert_eq!(page.total, 1);
    // The viewer's authority holds below the adapter too.
    let viewer = authentication::caller(
        state,
        Principal {
            requested_workspace: Some(workspace_id.clone()),
            ..them.clone()
        },
    )
    .await
    .expect("a member");
    assert!(matches!(
        records::delete::<Tasks>(state, &viewer, &task_id, None).await,
        Err(Error::AccessDenied(_))
    ));
    records::delete::<Tasks>(state, &auth, &task_id, None)
        .await
        .expect("deleted");
    assert!(matches!(
        records::get::<Tasks>(
            state,
            &auth,
            &task_id,
            &ListRequest::item(<Tasks as records::Resource>::SPEC, &[], &[]).expect("request"),
            None,
        )
        .await,
        Err(Error::NotFound(_))
    ));

    // Logout ends the session at once.
    identity::log_out(state, &me).await.expect("logged out");
    assert!(authentication::authenticate(
        state,
        Credential::Session(&owner.token),
        None,
        context()
    )
    .await
    .is_err());
    app.stop().await;
}
