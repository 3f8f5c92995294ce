//! Webhook endpoints and their deliveries: create (the `whsec_` secret shown once), list,
//! read, change, delete, rotate the secret with a grace period, send a test, list and
//! read deliveries, retry one, recover a window, replay stored events.
//!
//! The secret never enters an event: it is sealed with the dispatcher's key into
//! `webhook_secrets` (before the creation event, removed if the command fails), and the
//! events carry its fingerprint. Endpoint URLs pass the SSRF guard here, at
//! registration, and again at every connection (after DNS resolution) in the dispatcher.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Duration, Utc};
use pulsar_dispatcher::queue::{self, Replay, RetryError};
use pulsar_dispatcher::{secrets, EndpointControl};
use pulsar_domain::entitlements::Feature;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::scopes::{Action, Permission, Resource};
use pulsar_domain::webhook::{
    self, Webhook, WebhookCommand, WebhookPatch, WebhookSettings, MAX_GRACE_HOURS,
};
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::list::{self, ListRequest, Page};
use pulsar_projections::webhooks;
use serde_json::{json, Value};

use crate::application::as_of;
use crate::application::commands::Commands;
use crate::application::AppState;
use crate::application::{Auth, Error, Result};

const READ: Permission = Permission(Resource::Webhooks, Action::Read);
const WRITE: Permission = Permission(Resource::Webhooks, Action::Write);
const DELETE: Permission = Permission(Resource::Webhooks, Action::Delete);

/// Read models an endpoint command must have reached before answering.
const READ_MODELS: &[&str] = &[webhooks::NAME];

/// Default grace period of a secret rotation.
const DEFAULT_GRACE_HOURS: i64 = 24;

/// The write side as the dispatcher sees it: it disables endpoints through the same
/// command path as everyone else, so the change is an event (audited, and delivered as
/// `webhooks.disabled`).
#[derive(Debug)]
pub struct Control {
    pub commands: Commands,
}

impl EndpointControl for Control {
    fn disable<'a>(
        &'a self,
        endpoint_id: &'a str,
        reason: &'a str,
    ) -> Pin<Box<dyn Future<Output = std::result::Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let metadata = EventMetadata {
                actor: Actor::system(),
                request_id: ids::new_id(prefix::REQUEST),
                client_ip: String::new(),
                user_agent: "pulsar-dispatcher".into(),
                workspace_id: None,
            };
            let command = WebhookCommand::DisableWebhook {
                reason: reason.to_string(),
            };
            match self
                .commands
                .execute::<Webhook>(endpoint_id, command, &metadata, &[])
                .await
            {
                Ok(_) | Err(Error::NotFound(_)) => Ok(()),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

fn not_found() -> Error {
    Error::not_found("Webhook")
}

fn not_found_as_webhook(error: Error) -> Error {
    match error {
        Error::NotFound(_) => not_found(),
        other => other,
    }
}

/// The endpoint as a write just left it ([`as_of::written`]).
async fn written(
    state: &AppState,
    workspace_id: &str,
    id: &str,
    consistent: bool,
) -> Result<Value> {
    let read_model = row(state, workspace_id, id);
    as_of::written::<Webhook, _>(state, workspace_id, id, consistent, read_model)
        .await?
        .ok_or_else(not_found)
}

async fn item(state: &AppState, workspace_id: &str, id: &str) -> Result<Value> {
    row(state, workspace_id, id).await?.ok_or_else(not_found)
}

/// The endpoint's read-model row, if any.
async fn row(state: &AppState, workspace_id: &str, id: &str) -> Result<Option<Value>> {
    Ok(list::fetch_one(
        &state.pool,
        &webhooks::LIST,
        &[
            ("w.id", id.to_string()),
            ("w.workspace_id", workspace_id.to_string()),
        ],
    )
    .await?)
}

/// The endpoint URL as the SSRF guard sees it: 422 on `url` for one that can never be
/// reached (a literal private address, a bad scheme).
fn check_url(state: &AppState, url: &str) -> Result<()> {
    state
        .dispatcher
        .guard()
        .check_url(url.trim())
        .map(|_| ())
        .map_err(|refusal| Error::invalid("url", refusal.to_string()))
}

/// A page of the workspace's endpoints.
pub async fn list(state: &AppState, auth: &Auth, request: &ListRequest) -> Result<Page> {
    auth.require(READ)?;
    Ok(list::fetch(
        &state.pool,
        &webhooks::LIST,
        request,
        &[("w.workspace_id", auth.workspace_id.clone())],
    )
    .await?)
}

/// One endpoint, with its delivery counters; with `as_of`, the endpoint as it stood
/// then, folded from its events (no counters; see [`as_of`]).
pub async fn get(
    state: &AppState,
    auth: &Auth,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<Value> {
    auth.require(READ)?;
    match at {
        None => item(state, &auth.workspace_id, id).await,
        Some(at) => as_of::item::<Webhook>(state, &auth.workspace_id, id, at)
            .await?
            .ok_or_else(not_found),
    }
}

/// Seals `secret` for endpoint `id`, valid until replaced.
async fn store_secret(state: &AppState, id: &str, secret: &str) -> Result<String> {
    let fingerprint = secrets::fingerprint(secret);
    let sealed = state.dispatcher.secrets().seal(id, secret);
    sqlx::query(
        "INSERT INTO webhook_secrets (endpoint_id, fingerprint, sealed) VALUES ($1, $2, $3)
         ON CONFLICT (endpoint_id, fingerprint) DO UPDATE SET sealed = $3, valid_until = NULL",
    )
    .bind(id)
    .bind(&fingerprint)
    .bind(sealed)
    .execute(&state.pool)
    .await?;
    Ok(fingerprint)
}

fn secret_or_new(secret: Option<String>) -> Result<String> {
    match secret {
        Some(secret) => {
            secrets::validate(&secret).map_err(|message| Error::invalid("secret", message))?;
            Ok(secret)
        }
        None => Ok(secrets::generate()),
    }
}

/// Creates an endpoint; returns its item and, this once, its secret.
pub async fn create(
    state: &AppState,
    auth: &Auth,
    settings: WebhookSettings,
    secret: Option<String>,
) -> Result<(Value, String)> {
    auth.require(WRITE)?;
    let secret = secret_or_new(secret)?;
    // The domain validates the whole input (422 with every field); the guard adds what
    // depends on the operator's configuration.
    let id = ids::new_id(prefix::WEBHOOK);
    let mut normalized = settings.clone();
    webhook::normalize_settings(&mut normalized);
    let errors = webhook::validate_settings(&normalized);
    if !errors.is_empty() {
        // Refused before anything is written (the command would refuse the same).
        return Err(Error::Validation(errors));
    }
    check_url(state, &normalized.url)?;
    let (turn_state, turn_auth) = (state.clone(), auth.clone());
    super::limits::create_within(
        state,
        &auth.workspace_id,
        Feature::Webhooks,
        move || async move {
            let (state, auth) = (turn_state, turn_auth);
            let fingerprint = store_secret(&state, &id, &secret).await?;
            let command = WebhookCommand::CreateWebhook {
                workspace_id: auth.workspace_id.clone(),
                settings,
                secret_fingerprint: fingerprint,
                created_by: auth.principal.actor(),
            };
            let committed = match state
                .commands
                .execute::<Webhook>(&id, command, &auth.metadata(), READ_MODELS)
                .await
            {
                Ok(committed) => committed,
                Err(error) => {
                    sqlx::query("DELETE FROM webhook_secrets WHERE endpoint_id = $1")
                        .bind(&id)
                        .execute(&state.pool)
                        .await?;
                    return Err(error);
                }
            };
            let endpoint = written(&state, &auth.workspace_id, &id, committed.consistent).await?;
            Ok((endpoint, secret))
        },
    )
    .await
}

/// Changes an endpoint; `is_active: true` on a disabled one clears its reason.
pub async fn update(
    state: &AppState,
    auth: &Auth,
    id: &str,
    patch: WebhookPatch,
    expected: Option<i64>,
) -> Result<Value> {
    auth.require(WRITE)?;
    if let Some(url) = &patch.url {
        if webhook::check_url(url.trim()).is_ok() {
            check_url(state, url)?;
        }
    }
    let command = WebhookCommand::UpdateWebhook {
        workspace_id: auth.workspace_id.clone(),
        patch,
    };
    let committed = state
        .commands
        .execute_expecting::<Webhook>(id, command, &auth.metadata(), READ_MODELS, expected)
        .await
        .map_err(not_found_as_webhook)?;
    written(state, &auth.workspace_id, id, committed.consistent).await
}

/// Deletes an endpoint: nothing more is delivered to it, and its secrets are erased.
pub async fn delete(state: &AppState, auth: &Auth, id: &str, expected: Option<i64>) -> Result<()> {
    auth.require(DELETE)?;
    let command = WebhookCommand::DeleteWebhook {
        workspace_id: auth.workspace_id.clone(),
    };
    state
        .commands
        .execute_expecting::<Webhook>(id, command, &auth.metadata(), READ_MODELS, expected)
        .await
        .map_err(not_found_as_webhook)?;
    sqlx::query("DELETE FROM webhook_secrets WHERE endpoint_id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// A new secret; the previous ones keep signing (beside it) for `grace_period_hours`.
/// Returns the item, the new secret, and when the previous one stops.
pub async fn rotate_secret(
    state: &AppState,
    auth: &Auth,
    id: &str,
    grace_period_hours: Option<i64>,
) -> Result<(Value, String, DateTime<Utc>)> {
    auth.require(WRITE)?;
    let hours = grace_period_hours.unwrap_or(DEFAULT_GRACE_HOURS);
    if !(0..=i64::from(MAX_GRACE_HOURS)).contains(&hours) {
        return Err(Error::invalid(
            "grace_period_hours",
            format!("The grace period must be from 0 to {MAX_GRACE_HOURS} hours."),
        ));
    }
    let secret = secrets::generate();
    let fingerprint = secrets::fingerprint(&secret);
    let until = state.clock.now() + Duration::hours(hours);
    let command = WebhookCommand::RotateWebhookSecret {
        workspace_id: auth.workspace_id.clone(),
        secret_fingerprint: fingerprint.clone(),
        previous_valid_until: until,
    };
    // The command first: it decides whether the endpoint is the caller's. Until the new
    // row lands the current secret keeps signing, so no delivery goes unsigned.
    let committed = state
        .commands
        .execute::<Webhook>(id, command, &auth.metadata(), READ_MODELS)
        .await
        .map_err(not_found_as_webhook)?;
    let sealed = state.dispatcher.secrets().seal(id, &secret);
    let mut tx = state.pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_secrets SET valid_until = least(coalesce(valid_until, $2), $2)
          WHERE endpoint_id = $1",
    )
    .bind(id)
    .bind(until)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO webhook_secrets (endpoint_id, fingerprint, sealed) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(&fingerprint)
    .bind(sealed)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let endpoint = written(state, &auth.workspace_id, id, committed.consistent).await?;
    Ok((endpoint, secret, until))
}

/// Sends a `webhooks.test` event to the endpoint now and reports what came back. The
/// test is not stored and not recorded as a delivery.
pub async fn test(state: &AppState, auth: &Auth, id: &str) -> Result<Value> {
    auth.require(WRITE)?;
    let endpoint = item(state, &auth.workspace_id, id).await?;
    let url = endpoint["url"].as_str().unwrap_or_default().to_string();
    let mut data = json!({ "workspace_id": auth.workspace_id });
    for field in [
        "id",
        "url",
        "description",
        "events",
        "is_active",
        "disabled_reason",
        "rate_limit",
        "created_at",
        "updated_at",
        "version",
    ] {
        data[field] = endpoint[field].clone();
    }
    let message_id = ids::new_id("evt");
    let body = json!({
        "id": message_id,
        "type": "webhooks.test",
        "workspace_id": auth.workspace_id,
        "created_at": state.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string();
    let outcome = state
        .dispatcher
        .send_now(id, &url, &message_id, "webhooks.test", &body)
        .await?;
    Ok(if outcome.succeeded() {
        json!({
            "success": true,
            "status_code": outcome.status_code,
            "response_time_ms": outcome.duration_ms,
            "response_body": outcome.response_body,
        })
    } else {
        let mut result = json!({
            "success": false,
            "error": outcome.summary().unwrap_or_else(|| "the request failed".into()),
            "response_time_ms": outcome.duration_ms,
        });
        if let Some(code) = outcome.status_code {
            result["status_code"] = json!(code);
            result["response_body"] = json!(outcome.response_body);
        }
        result
    })
}

/// A page of an endpoint's deliveries.
pub async fn deliveries(
    state: &AppState,
    auth: &Auth,
    id: &str,
    request: &ListRequest,
) -> Result<Page> {
    auth.require(READ)?;
    item(state, &auth.workspace_id, id).await?;
    Ok(list::fetch(
        &state.pool,
        &webhooks::DELIVERIES,
        request,
        &[
            ("d.endpoint_id", id.to_string()),
            ("d.workspace_id", auth.workspace_id.clone()),
        ],
    )
    .await?)
}

/// One delivery with the request body, the last response body and every attempt.
pub async fn delivery(state: &AppState, auth: &Auth, id: &str, delivery_id: &str) -> Result<Value> {
    auth.require(READ)?;
    let found = list::fetch_one(
        &state.pool,
        &webhooks::DELIVERIES,
        &[
            ("d.id", delivery_id.to_string()),
            ("d.endpoint_id", id.to_string()),
            ("d.workspace_id", auth.workspace_id.clone()),
        ],
    )
    .await?;
    let Some(mut found) = found else {
        return Err(Error::not_found("Delivery"));
    };
    let (body, attempts): (String, Value) = sqlx::query_as(
        "SELECT m.body,
                coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'number', a.number, 'status_code', a.status_code,
                            'duration_ms', a.duration_ms, 'error', a.error,
                            'attempted_at', rfc3339(a.attempted_at)) ORDER BY a.number)
                            FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]')
           FROM webhook_deliveries d JOIN webhook_messages m ON m.event_id = d.event_id
          WHERE d.id = $1",
    )
    .bind(delivery_id)
    .fetch_one(&state.pool)
    .await?;
    let response_body: Option<String> = sqlx::query_scalar(
        "SELECT response_body FROM webhook_attempts WHERE delivery_id = $1
          ORDER BY number DESC LIMIT 1",
    )
    .bind(delivery_id)
    .fetch_optional(&state.pool)
    .await?
    .flatten();
    found["request_body"] = serde_json::from_str(&body).unwrap_or(Value::String(body));
    found["response_body"] = json!(response_body);
    found["attempts"] = attempts;
    Ok(found)
}

/// Queues one delivery again now (400 `cannot_retry` once it succeeded).
pub async fn retry(state: &AppState, auth: &Auth, id: &str, delivery_id: &str) -> Result<Value> {
    auth.require(WRITE)?;
    item(state, &auth.workspace_id, id).await?;
    let attempt =
        queue::retry(&state.pool, id, delivery_id)
            .await
            .map_err(|error| match error {
                RetryError::NotFound => Error::not_found("Delivery"),
                RetryError::Succeeded => Error::CannotRetry(
                    "The delivery already succeeded; replay its event to send it again.".into(),
                ),
                RetryError::Sql(e) => e.into(),
            })?;
    state.dispatcher.wake();
    Ok(json!({ "id": delivery_id, "status": "pending", "attempt": attempt }))
}

/// The window `[since, until)`, `until` defaulting to now.
fn window(
    state: &AppState,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let until = until.unwrap_or_else(|| state.clock.now() + Duration::milliseconds(1));
    if since >= until {
        return Err(Error::invalid(
            "until",
            "The until time must be after since.",
        ));
    }
    Ok((since, until))
}

/// Queues again, once, the endpoint's `failed` and `dead` deliveries created in the
/// window; returns how many.
pub async fn recover(
    state: &AppState,
    auth: &Auth,
    id: &str,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
) -> Result<u64> {
    auth.require(WRITE)?;
    let (since, until) = window(state, since, until)?;
    item(state, &auth.workspace_id, id).await?;
    let queued = queue::recover(&state.pool, id, since, until).await?;
    state.dispatcher.wake();
    Ok(queued)
}

/// Delivers again every stored event of the workspace in the window that the endpoint
/// subscribes to (narrowed to `event_types` when given); returns how many.
pub async fn replay(
    state: &AppState,
    auth: &Auth,
    id: &str,
    since: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    event_types: Vec<String>,
) -> Result<u64> {
    auth.require(WRITE)?;
    let (since, until) = window(state, since, until)?;
    if let Some(bad) = event_types.iter().find(|t| !webhook::known_pattern(t)) {
        return Err(Error::invalid(
            "event_types",
            format!("`{bad}` is not an event type or wildcard (see GET /event-types)."),
        ));
    }
    let endpoint = item(state, &auth.workspace_id, id).await?;
    if endpoint["is_active"] != json!(true) {
        return Err(Error::Conflict(
            "The webhook is disabled; activate it before replaying events to it.".into(),
        ));
    }
    let endpoint_events: Vec<String> =
        serde_json::from_value(endpoint["events"].clone()).unwrap_or_default();
    let queued = queue::replay(
        &state.pool,
        &Replay {
            endpoint_id: id,
            workspace_id: &auth.workspace_id,
            endpoint_events: &endpoint_events,
            event_types: &event_types,
            since,
            until,
        },
    )
    .await?;
    state.dispatcher.wake();
    Ok(queued)
}
