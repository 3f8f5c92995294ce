//! API keys: create (the secret shown once), list and read (never the secret), change,
//! rotate with a grace period, revoke everywhere at once, and a key's history.
//!
//! A key's secret is stored only as SHA-256 in the write-side `api_key_secrets` table,
//! written before the creation event (so no node's key table can see a key without one)
//! and removed if the creation fails. The `ApiKey` aggregate knows its workspace and
//! refuses commands from another, and holds the rules on scopes (never beyond the
//! grantor's; a rotation only by someone holding every scope of the key).

use chrono::{DateTime, Duration, Utc};
use pulsar_domain::api_key::{ApiKey, ApiKeyCommand, ApiKeyPatch, ApiKeySettings, MAX_GRACE_HOURS};
use pulsar_domain::entitlements::Feature;
use pulsar_domain::ids;
use pulsar_domain::keys::NewKey;
use pulsar_domain::scopes::{Action, Permission, Resource, ScopeSet};
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::list::{self, ListRequest, Page};
use pulsar_projections::{api_keys, audit, key_table};
use serde_json::{json, Value};

use crate::application::AppState;
use crate::application::{as_of, commands};
use crate::application::{Auth, Error, Result};

const READ: Permission = Permission(Resource::ApiKeys, Action::Read);
const WRITE: Permission = Permission(Resource::ApiKeys, Action::Write);
const DELETE: Permission = Permission(Resource::ApiKeys, Action::Delete);

/// Read models a key command must have reached before answering: the list, and this
/// process's key table (so the key works, or stops, at once).
const READ_MODELS: &[&str] = &[api_keys::NAME, key_table::NAME];

/// A key just issued: its item and, this once, the secret.
#[derive(Debug)]
pub struct Issued {
    pub item: Value,
    pub key: NewKey,
}

impl Issued {
    /// The item with the full key and its two halves, for the one answer that shows
    /// them.
    pub fn with_secret(mut self, grace_period_ends_at: Option<DateTime<Utc>>) -> Value {
        if let Value::Object(map) = &mut self.item {
            map.insert("key".into(), json!(self.key.full()));
            map.insert("apiKey".into(), json!(self.key.api_key));
            map.insert("apiSecret".into(), json!(self.key.api_secret));
            if let Some(at) = grace_period_ends_at {
                map.insert(
                    "grace_period_ends_at".into(),
                    json!(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                );
            }
        }
        self.item
    }
}

/// The key as a write just left it: from the read model, which the write waited for;
/// when that wait timed out (a starved projector), folded from the event store, which is
/// exact at once. A key just issued must reach its caller with its secret, never a 404.
/// Not [`as_of::written`]: a key's status also depends on the clock (expiry, grace),
/// which the fold alone does not apply.
async fn written(
    state: &AppState,
    workspace_id: &str,
    key_id: &str,
    consistent: bool,
) -> Result<Value> {
    if consistent {
        return item(state, workspace_id, key_id).await;
    }
    tracing::warn!(%key_id, "answering a key write from the event store: its read model is behind");
    // Everything recorded so far (the bound only has to lie past the commit).
    let mut view = as_of::fold::<ApiKey>(state, key_id, Utc::now() + Duration::days(1)).await?;
    view.status = view.status_at(state.clock.now()).to_string();
    as_of::present(view, Some(workspace_id)).ok_or_else(|| Error::not_found("API key"))
}

async fn item(state: &AppState, workspace_id: &str, key_id: &str) -> Result<Value> {
    list::fetch_one(
        &state.pool,
        &api_keys::LIST,
        &[
            ("k.id", key_id.to_string()),
            ("k.workspace_id", workspace_id.to_string()),
        ],
    )
    .await?
    .ok_or_else(|| Error::not_found("API key"))
}

/// Stores a new key's secret hash and appends its creation; the secret row goes first so
/// the key table can never see a key without one, and is removed if the command fails.
async fn issue(
    state: &AppState,
    workspace_id: &str,
    settings: ApiKeySettings,
    created_by: Actor,
    rotated_from: Option<String>,
    grantor: ScopeSet,
    metadata: &EventMetadata,
) -> Result<(String, NewKey, bool)> {
    let key = NewKey::generate();
    let key_id = ids::new_id(ids::prefix::API_KEY);
    sqlx::query("INSERT INTO api_key_secrets (key_id, public_id, secret_hash) VALUES ($1, $2, $3)")
        .bind(&key_id)
        .bind(&key.api_key)
        .bind(key.secret_hash().as_slice())
        .execute(&state.pool)
        .await?;
    let command = ApiKeyCommand::CreateApiKey {
        workspace_id: workspace_id.to_string(),
        public_id: key.api_key.clone(),
        prefix: key.display_prefix(),
        masked: key.masked(),
        settings,
        created_by,
        rotated_from,
        grantor,
        now: state.clock.now(),
    };
    match state
        .commands
        .execute::<ApiKey>(&key_id, command, metadata, READ_MODELS)
        .await
    {
        Ok(committed) => Ok((key_id, key, committed.consistent)),
        Err(error) => {
            sqlx::query("DELETE FROM api_key_secrets WHERE key_id = $1")
                .bind(&key_id)
                .execute(&state.pool)
                .await?;
            Err(error)
        }
    }
}

/// A page of the workspace's keys.
pub async fn list(state: &AppState, auth: &Auth, request: &ListRequest) -> Result<Page> {
    auth.require(READ)?;
    Ok(list::fetch(
        &state.pool,
        &api_keys::LIST,
        request,
        &[("k.workspace_id", auth.workspace_id.clone())],
    )
    .await?)
}

/// One key (revoked and expired keys stay readable, for audit); with `as_of`, the key
/// as it stood then, folded from its events (see [`as_of`]).
pub async fn get(
    state: &AppState,
    auth: &Auth,
    id: &str,
    at: Option<DateTime<Utc>>,
) -> Result<Value> {
    auth.require(READ)?;
    let Some(at) = at else {
        return item(state, &auth.workspace_id, id).await;
    };
    let mut view = as_of::fold::<ApiKey>(state, id, at).await?;
    view.status = view.status_at(at).to_string();
    as_of::present(view, Some(&auth.workspace_id)).ok_or_else(|| Error::not_found("API key"))
}

/// Creates a key with at most the caller's own scopes.
pub async fn create(state: &AppState, auth: &Auth, settings: ApiKeySettings) -> Result<Issued> {
    auth.require(WRITE)?;
    let (turn_state, turn_auth) = (state.clone(), auth.clone());
    // Rotation issues keys too, but never waits on the limit: replacing a leaked key
    // must always be possible.
    super::limits::create_within(
        state,
        &auth.workspace_id,
        Feature::ApiKeys,
        move || async move {
            let (state, auth) = (turn_state, turn_auth);
            let (key_id, key, consistent) = issue(
                &state,
                &auth.workspace_id,
                settings,
                auth.principal.actor(),
                None,
                auth.scopes,
                &auth.metadata(),
            )
            .await?;
            Ok(Issued {
                item: written(&state, &auth.workspace_id, &key_id, consistent).await?,
                key,
            })
        },
    )
    .await
}

/// Changes a key's name, scopes, allowlist, expiry, age policy or tier; in force on
/// every node within a notification's latency, here at once.
pub async fn update(
    state: &AppState,
    auth: &Auth,
    id: &str,
    patch: ApiKeyPatch,
    expected: Option<i64>,
) -> Result<Value> {
    auth.require(WRITE)?;
    let command = ApiKeyCommand::UpdateApiKey {
        workspace_id: auth.workspace_id.clone(),
        patch,
        grantor: auth.scopes,
        now: state.clock.now(),
    };
    let committed = state
        .commands
        .execute_expecting::<ApiKey>(id, command, &auth.metadata(), READ_MODELS, expected)
        .await
        .map_err(not_found_as_key)?;
    written(state, &auth.workspace_id, id, committed.consistent).await
}

fn not_found_as_key(error: Error) -> Error {
    match error {
        Error::NotFound(_) => Error::not_found("API key"),
        other => other,
    }
}

/// Rotates a key: a new key with the same settings; the old one keeps working for
/// `grace_period_hours` (`rotating`), then stops by itself. Returns the new key and
/// when the old one stops.
pub async fn rotate(
    state: &AppState,
    auth: &Auth,
    id: &str,
    grace_period_hours: Option<i64>,
) -> Result<(Issued, DateTime<Utc>)> {
    auth.require(WRITE)?;
    let hours = grace_period_hours.unwrap_or(24);
    let hours = u32::try_from(hours)
        .ok()
        .filter(|h| *h <= MAX_GRACE_HOURS)
        .ok_or_else(|| {
            Error::invalid(
                "grace_period_hours",
                format!("The grace period must be from 0 to {MAX_GRACE_HOURS} hours."),
            )
        })?;
    let old: ApiKey = commands::load(&state.pool, id).await?;
    if old.workspace_id() != Some(auth.workspace_id.as_str()) {
        return Err(Error::not_found("API key"));
    }
    let settings = old
        .current_settings()
        .cloned()
        .ok_or_else(|| Error::not_found("API key"))?;
    // The domain's rule, checked before the new key is issued (the rotation command
    // checks it again, authoritatively).
    old.may_rotate(auth.scopes)?;
    let metadata = auth.metadata();
    let now = state.clock.now();
    let (new_id, key, issued_consistently) = issue(
        state,
        &auth.workspace_id,
        ApiKeySettings {
            expires_at: settings.expires_at.filter(|at| *at > now),
            ..settings
        },
        auth.principal.actor(),
        Some(id.to_string()),
        auth.scopes,
        &metadata,
    )
    .await?;
    let rotate = ApiKeyCommand::RotateApiKey {
        workspace_id: auth.workspace_id.clone(),
        rotator: auth.scopes,
        replaced_by: new_id.clone(),
        grace_period_hours: hours,
        now,
    };
    let rotated = state
        .commands
        .execute::<ApiKey>(id, rotate, &metadata, READ_MODELS)
        .await;
    let rotated = match rotated {
        Ok(rotated) => rotated,
        Err(error) => {
            // The old key could not be rotated (revoked or rotated meanwhile): the new one
            // must not outlive this failed request.
            state
                .commands
                .execute::<ApiKey>(
                    &new_id,
                    ApiKeyCommand::RevokeApiKey {
                        workspace_id: auth.workspace_id.clone(),
                    },
                    &metadata,
                    READ_MODELS,
                )
                .await?;
            return Err(error);
        }
    };
    let consistent = issued_consistently && rotated.consistent;
    let grace_end = now + Duration::hours(i64::from(hours));
    Ok((
        Issued {
            item: written(state, &auth.workspace_id, &new_id, consistent).await?,
            key,
        },
        grace_end,
    ))
}

/// Revokes a key: it stops working at once, on every node, with every session made
/// from it.
pub async fn revoke(state: &AppState, auth: &Auth, id: &str, expected: Option<i64>) -> Result<()> {
    auth.require(DELETE)?;
    state
        .commands
        .execute_expecting::<ApiKey>(
            id,
            ApiKeyCommand::RevokeApiKey {
                workspace_id: auth.workspace_id.clone(),
            },
            &auth.metadata(),
            READ_MODELS,
            expected,
        )
        .await
        .map_err(not_found_as_key)?;
    sqlx::query("DELETE FROM sessions WHERE api_key_id = $1")
        .bind(id)
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// A key's audit trail: its slice of the audit log (`GET /audit/events` entries, with
/// their leaf hashes), in commit order, with who did each step and from where.
pub async fn history(state: &AppState, auth: &Auth, id: &str) -> Result<Vec<Value>> {
    auth.require(READ)?;
    item(state, &auth.workspace_id, id).await?;
    let key_type = <ApiKey as cqrs_es::Aggregate>::TYPE;
    // Read-your-writes: the key's latest event must have reached the audit log.
    if let Some((position, _)) =
        pulsar_projections::log::position_of_latest(&state.pool, key_type, id).await?
    {
        let reached = state
            .subscriptions
            .wait_for(&[audit::NAME], position, state.config.consistency_timeout)
            .await;
        if !reached {
            return Err(Error::Unavailable(
                "The audit log is catching up; try again in a moment.".into(),
            ));
        }
    }
    let filter = audit::EventFilter {
        workspace_id: Some(auth.workspace_id.clone()),
        aggregate_type: Some(key_type.to_string()),
        aggregate_id: Some(id.to_string()),
        ..audit::EventFilter::default()
    };
    let mut conn = state.pool.acquire().await?;
    let mut entries = Vec::new();
    let mut after = -1;
    loop {
        let (page, last) = audit::events_page(&mut conn, &filter, after, 1000).await?;
        entries.extend(page);
        match last {
            Some(last) => after = last,
            None => return Ok(entries),
        }
    }
}
