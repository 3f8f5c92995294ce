//! What a workspace may still do: usage per feature against its tier's limits
//! (`/entitlements/check`, `/entitlements/summary`).
//!
//! Counted features come from the read models (live records, keys, endpoints, members);
//! API calls and pixel events from usage's hourly rollup since the start of the UTC month
//! (metered calls, recorded usage and tracked pixel events all land there); storage is
//! the bytes of the workspace's documents.

use chrono::{DateTime, Utc};
use pulsar_domain::entitlements::{month_start, next_month, Feature, Period};
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::scopes::{Action, Permission, Resource};
use pulsar_domain::usage::{UsageCommand, UsageRecord};
use pulsar_domain::workspace::Tier;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{AppState, Auth, Error, Result};

const READ: Permission = Permission(Resource::Entitlements, Action::Read);

/// One feature's standing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Standing {
    pub used: u64,
    /// `null`: no limit on this tier.
    pub limit: Option<u64>,
    pub available: Option<u64>,
    /// Of the limit, 0 to 100 (two decimals); `null` without a limit.
    pub percentage: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
}

fn standing(tier: Tier, feature: Feature, used: u64, now: DateTime<Utc>) -> Standing {
    let limit = tier.limit(feature);
    Standing {
        used,
        limit,
        available: limit.map(|l| l.saturating_sub(used)),
        percentage: limit.map(|l| {
            let p = if l == 0 {
                100.0
            } else {
                used as f64 * 100.0 / l as f64
            };
            (p.min(100.0) * 100.0).round() / 100.0
        }),
        reset_at: (feature.period() == Period::Monthly)
            .then(|| next_month(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        unit: feature.unit(),
    }
}

/// The SQL (a `bigint` scalar subquery over workspace `w`, `$2` the start of the UTC
/// month) that counts `feature`'s usage. The summary and single-feature reads share it,
/// so they cannot disagree.
fn usage_sql(feature: Feature) -> String {
    match feature {
        Feature::ApiKeys => "(SELECT count(*) FROM api_keys k
                               WHERE k.workspace_id = w.id
                                 AND api_key_status(k, now()) IN ('active', 'rotating'))"
            .into(),
        Feature::Webhooks => "(SELECT count(*) FROM webhooks h WHERE h.workspace_id = w.id)".into(),
        Feature::Members => {
            "(SELECT count(*) FROM workspace_members m WHERE m.workspace_id = w.id)".into()
        }
        Feature::ApiCalls | Feature::PixelEvents => format!(
            "(SELECT coalesce(sum(u.count), 0)::bigint FROM usage_hours u
               WHERE u.workspace_id = w.id AND u.feature = '{}' AND u.hour >= $2)",
            feature.as_str()
        ),
        Feature::Storage => {
            "(SELECT coalesce(sum(octet_length(d.title) + octet_length(d.body)), 0)::bigint
                               FROM documents d WHERE d.workspace_id = w.id)"
                .into()
        }
        Feature::Projects
        | Feature::Tasks
        | Feature::Contacts
        | Feature::Companies
        | Feature::Deals
        | Feature::Documents => format!(
            "(SELECT coalesce(sum(c.count), 0)::bigint FROM workspace_record_counts c
               WHERE c.workspace_id = w.id AND c.feature = '{}')",
            feature.as_str()
        ),
    }
}

/// The workspace's tier and its usage of `features`, in one read.
async fn usage_of(
    state: &AppState,
    workspace_id: &str,
    features: &[Feature],
) -> Result<(Tier, Vec<(Feature, u64)>)> {
    let columns: Vec<String> = features.iter().map(|f| usage_sql(*f)).collect();
    let row = sqlx::query(&format!(
        "SELECT w.tier, {} FROM workspaces w WHERE w.id = $1 AND $2::timestamptz IS NOT NULL",
        columns.join(", ")
    ))
    .bind(workspace_id)
    .bind(month_start(state.clock.now()))
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| Error::not_found("Workspace"))?;
    let tier = Tier::parse(row.try_get::<&str, _>(0)?).unwrap_or_default();
    let mut out = Vec::with_capacity(features.len());
    for (i, feature) in features.iter().enumerate() {
        out.push((*feature, row.try_get::<i64, _>(i + 1)?.max(0) as u64));
    }
    Ok((tier, out))
}

/// The workspace's tier and usage of every feature, in one read.
async fn usage(state: &AppState, workspace_id: &str) -> Result<(Tier, Vec<(Feature, u64)>)> {
    usage_of(state, workspace_id, &Feature::ALL).await
}

/// The workspace's tier and its usage of `feature` (one subquery, not the summary's all).
pub async fn used(state: &AppState, workspace_id: &str, feature: Feature) -> Result<(Tier, u64)> {
    let (tier, usage) = usage_of(state, workspace_id, &[feature]).await?;
    Ok((tier, usage.first().map_or(0, |(_, used)| *used)))
}

/// What `POST /entitlements/usage` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recorded {
    /// `false` when the quantity would pass the limit: nothing was recorded.
    pub recorded: bool,
    pub feature: &'static str,
    /// Usage this period, including this recording when it was recorded.
    pub current_usage: u64,
    /// `null`: no limit on this tier.
    pub limit: Option<u64>,
}

/// `POST /entitlements/usage`: records `quantity` of a metered feature as an event,
/// unless it would pass the tier's limit. Recording and counting take the same turn per
/// (workspace, feature) as limited creations, so concurrent recordings cannot overshoot.
pub async fn record_usage(
    state: &AppState,
    auth: &Auth,
    feature: Feature,
    quantity: u64,
    metadata: Option<Value>,
) -> Result<Recorded> {
    auth.require(Permission(Resource::Entitlements, Action::Write))?;
    pulsar_domain::usage::validate_recording(feature, quantity, metadata.as_ref()).into_result()?;
    let (tier, _) = used(state, &auth.workspace_id, feature).await?;
    let recorded = if tier.limit(feature).is_none() {
        record_counted(state, auth, feature, quantity, metadata).await?
    } else {
        let (state, auth) = (state.clone(), auth.clone());
        tokio::spawn(async move {
            let hold = state
                .limits
                .hold(&state.pool, &auth.workspace_id, feature)
                .await?;
            let recorded = record_counted(&state, &auth, feature, quantity, metadata).await;
            hold.release().await;
            recorded
        })
        .await
        .map_err(|error| Error::Internal(format!("a recording's task failed: {error}")))??
    };
    if recorded.recorded {
        super::alerts::spawn_observe(state, &auth.workspace_id, feature);
    }
    Ok(recorded)
}

/// Records once the count (taken in the turn, when there is one) allows it.
async fn record_counted(
    state: &AppState,
    auth: &Auth,
    feature: Feature,
    quantity: u64,
    metadata: Option<Value>,
) -> Result<Recorded> {
    let (tier, current) = used(state, &auth.workspace_id, feature).await?;
    let limit = tier.limit(feature);
    if limit.is_some_and(|limit| current.saturating_add(quantity) > limit) {
        return Ok(Recorded {
            recorded: false,
            feature: feature.as_str(),
            current_usage: current,
            limit,
        });
    }
    let command = UsageCommand::RecordUsage {
        workspace_id: auth.workspace_id.clone(),
        feature,
        quantity,
        metadata,
    };
    let id = ids::new_id(prefix::USAGE);
    state
        .commands
        .create::<UsageRecord>(
            &id,
            command,
            &auth.metadata(),
            &[pulsar_projections::usage::NAME],
        )
        .await?;
    Ok(Recorded {
        recorded: true,
        feature: feature.as_str(),
        current_usage: current.saturating_add(quantity),
        limit,
    })
}

/// `GET /entitlements/summary`: every feature's standing.
pub async fn summary(state: &AppState, auth: &Auth) -> Result<Value> {
    auth.require(READ)?;
    let (tier, usage) = usage(state, &auth.workspace_id).await?;
    let now = state.clock.now();
    let entitlements: serde_json::Map<String, Value> = usage
        .into_iter()
        .map(|(feature, used)| {
            let standing =
                serde_json::to_value(standing(tier, feature, used, now)).unwrap_or(Value::Null);
            (feature.as_str().to_string(), standing)
        })
        .collect();
    Ok(serde_json::json!({
        "workspace_id": auth.workspace_id,
        "tier": tier.as_str(),
        "entitlements": entitlements,
    }))
}

/// What `GET /entitlements/check` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub allowed: bool,
    pub feature: &'static str,
    pub current_usage: u64,
    pub limit: Option<u64>,
    pub available: Option<u64>,
    /// When not allowed: `LIMIT_EXCEEDED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_url: Option<String>,
}

/// Most a check may ask for at once.
pub const MAX_QUANTITY: u64 = 1_000_000_000;

/// `GET /entitlements/check`: may the workspace use `quantity` more of `feature`?
pub async fn check(
    state: &AppState,
    auth: &Auth,
    feature: Feature,
    quantity: u64,
) -> Result<Check> {
    auth.require(READ)?;
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        return Err(Error::invalid(
            "quantity",
            format!("The quantity must be from 1 to {MAX_QUANTITY}."),
        ));
    }
    let (tier, used) = used(state, &auth.workspace_id, feature).await?;
    let limit = tier.limit(feature);
    let allowed = limit.is_none_or(|l| used.saturating_add(quantity) <= l);
    Ok(Check {
        allowed,
        feature: feature.as_str(),
        current_usage: used,
        limit,
        available: limit.map(|l| l.saturating_sub(used)),
        reason: (!allowed).then_some("LIMIT_EXCEEDED"),
        message: (!allowed).then(|| {
            format!(
                "The {} tier allows {} {}; {used} are in use.",
                tier.as_str(),
                limit.unwrap_or_default(),
                feature.as_str()
            )
        }),
        upgrade_url: (!allowed).then(|| state.config.upgrade_url.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standings_say_what_is_left() {
        let now = Utc::now();
        let s = standing(Tier::Free, Feature::Projects, 4, now);
        assert_eq!(
            (s.limit, s.available, s.percentage),
            (Some(5), Some(1), Some(80.0))
        );
        assert!(s.reset_at.is_none());
        let over = standing(Tier::Free, Feature::Projects, 7, now);
        assert_eq!((over.available, over.percentage), (Some(0), Some(100.0)));
        let unlimited = standing(Tier::Enterprise, Feature::ApiCalls, 9, now);
        assert_eq!((unlimited.limit, unlimited.percentage), (None, None));
        assert!(unlimited.reset_at.is_some());
    }
}
