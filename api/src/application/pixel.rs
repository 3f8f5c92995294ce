//! Pixel tracking: `GET /pixel/config` and `POST /pixel/track`. No credential: the
//! workspace is named by its public pixel id. Every request, valid or not, first passes
//! the per-IP window ([`REQUESTS_PER_MINUTE`] in any sliding minute, exact across
//! processes: PostgreSQL's `pixel_admit` locks the IP's row). A tracked event is a
//! `PixelEvent` in the log and one `pixel_events` unit of usage; nothing the page sent is
//! echoed back.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulsar_domain::entitlements::Feature;
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::tracking::{self, PixelCommand, PixelEvent, PixelHit};
use serde::Serialize;

use super::rate_limit::Decision;
use super::{AppState, Error, RequestContext, Result};
use pulsar_domain::{Actor, ActorType, EventMetadata};

/// Requests one client IP may send in any minute.
pub const REQUESTS_PER_MINUTE: u32 = 300;

/// What a page needs to send events (`GET /pixel/config`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PixelConfig {
    pub pixel_id: String,
    /// Where events go: `POST` with `x-pulsar-pixel` or a `pixel_id` member.
    pub track_url: &'static str,
    /// Requests per client IP in any sliding minute (config and track together).
    pub requests_per_minute: u32,
    pub max_url_length: usize,
    pub max_event_name_length: usize,
    pub max_properties: usize,
    pub max_property_value_length: usize,
}

/// Admits one request from `ip`, or 429 with the wait until a slot frees.
pub async fn admit(state: &AppState, ip: IpAddr) -> Result<()> {
    let free_at: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT pixel_admit($1::inet, $2, interval '1 minute')")
            .bind(ip.to_string())
            .bind(REQUESTS_PER_MINUTE as i32)
            .fetch_one(&state.pool)
            .await?;
    match free_at {
        None => Ok(()),
        Some(at) => {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            Err(Error::RateLimited(Decision {
                allowed: false,
                limit: REQUESTS_PER_MINUTE,
                per_minute: REQUESTS_PER_MINUTE,
                remaining: 0,
                reset_at: at.timestamp(),
                retry_after: wait.max(Duration::from_secs(1)),
            }))
        }
    }
}

/// The workspace of a public pixel id; 404 for an unknown or malformed one.
async fn workspace_of(state: &AppState, pixel_id: &str) -> Result<String> {
    let unknown = || Error::NotFound("No pixel has this id.".into());
    if !ids::is_id(prefix::PIXEL, pixel_id) {
        return Err(unknown());
    }
    sqlx::query_scalar("SELECT id FROM workspaces WHERE pixel_id = $1")
        .bind(pixel_id)
        .fetch_optional(&state.pool)
        .await?
        .ok_or_else(unknown)
}

/// `GET /pixel/config` (after [`admit`]).
pub async fn config(state: &AppState, pixel_id: &str) -> Result<PixelConfig> {
    workspace_of(state, pixel_id).await?;
    Ok(PixelConfig {
        pixel_id: pixel_id.to_string(),
        track_url: "/api/v1/pixel/track",
        requests_per_minute: REQUESTS_PER_MINUTE,
        max_url_length: tracking::MAX_URL,
        max_event_name_length: tracking::MAX_EVENT_NAME,
        max_properties: tracking::MAX_PROPERTIES,
        max_property_value_length: tracking::MAX_PROPERTY_VALUE,
    })
}

/// `POST /pixel/track` (after [`admit`]): records one event; returns its id. Over the
/// workspace's monthly
/// `pixel_events` limit the event is refused with 403 `feature_limit_reached` (a soft
/// limit: concurrent events near it may pass it by a few, unlike creations).
pub async fn track(
    state: &AppState,
    context: &RequestContext,
    pixel_id: &str,
    hit: PixelHit,
) -> Result<String> {
    let workspace_id = workspace_of(state, pixel_id).await?;
    tracking::validate_hit(&hit).into_result()?;
    let (tier, used) =
        super::entitlements::used(state, &workspace_id, Feature::PixelEvents).await?;
    if let Some(limit) = tier.limit(Feature::PixelEvents) {
        if used >= limit {
            return Err(Error::FeatureLimitReached {
                feature: Feature::PixelEvents.as_str(),
                limit: limit as i64,
                tier: tier.as_str(),
                upgrade_url: state.config.upgrade_url.clone(),
            });
        }
    }
    let id = ids::new_id(prefix::PIXEL_EVENT);
    let metadata = EventMetadata {
        actor: Actor {
            actor_type: ActorType::System,
            id: pixel_id.to_string(),
        },
        request_id: context.request_id.clone(),
        client_ip: context.client_ip.0.to_string(),
        user_agent: context.user_agent.clone(),
        workspace_id: None,
    };
    let command = PixelCommand::TrackPixelEvent {
        workspace_id: workspace_id.clone(),
        hit,
    };
    state
        .commands
        .create::<PixelEvent>(&id, command, &metadata, &[pulsar_projections::usage::NAME])
        .await?;
    super::alerts::spawn_observe(state, &workspace_id, Feature::PixelEvents);
    Ok(id)
}

/// Forgets IPs with no request in the last minute (maintenance).
pub async fn prune(state: &AppState) -> Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM pixel_rate
          WHERE coalesce(hits[cardinality(hits)], '-infinity') < now() - interval '1 minute'",
    )
    .execute(&state.pool)
    .await?
    .rows_affected())
}
