//! What a workspace may still do: usage per feature against its tier's limits
//! (`/entitlements/check`, `/entitlements/summary`).
//!
//! Counted features come from the read models (live records, keys, endpoints, members);
//! API calls from the metered usage's hourly rollup since the start of the UTC month; storage is
//! the bytes of the workspace's documents. Pixel events are counted once pixel tracking
//! records them (none yet: the feature is not built, so its usage is truly zero).

use chrono::{DateTime, Datelike, TimeZone, Utc};
use pulsar_domain::entitlements::{Feature, Period};
use pulsar_domain::scopes::{Action, Permission, Resource};
use pulsar_domain::workspace::Tier;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;

use super::{AppState, Auth, Error, Result};

const READ: Permission = Permission(Resource::Entitlements, Action::Read);

/// The start of the UTC month after `now`: when monthly usage resets.
pub fn next_month(now: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

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

/// The workspace's tier and usage of every feature, in one read.
async fn usage(state: &AppState, workspace_id: &str) -> Result<(Tier, Vec<(Feature, u64)>)> {
    let now = state.clock.now();
    let row = sqlx::query(
        "SELECT w.tier,
                (SELECT coalesce(jsonb_object_agg(c.feature, c.count), '{}'::jsonb)
                   FROM workspace_record_counts c WHERE c.workspace_id = w.id) AS records,
                (SELECT count(*) FROM api_keys k
                  WHERE k.workspace_id = w.id
                    AND api_key_status(k, now()) IN ('active', 'rotating')) AS api_keys,
                (SELECT count(*) FROM webhooks h WHERE h.workspace_id = w.id) AS webhooks,
                (SELECT count(*) FROM workspace_members m WHERE m.workspace_id = w.id) AS members,
                (SELECT coalesce(sum(u.count), 0)::bigint FROM usage_hours u
                  WHERE u.workspace_id = w.id AND u.feature = 'api_calls'
                    AND u.hour >= $2) AS api_calls,
                (SELECT coalesce(sum(octet_length(d.title) + octet_length(d.body)), 0)::bigint
                   FROM documents d WHERE d.workspace_id = w.id) AS storage
           FROM workspaces w WHERE w.id = $1",
    )
    .bind(workspace_id)
    .bind(month_start(now))
    .fetch_optional(&state.pool)
    .await?
    .ok_or_else(|| Error::not_found("Workspace"))?;
    let tier = Tier::parse(row.try_get::<&str, _>("tier")?).unwrap_or_default();
    let records: Value = row.try_get("records")?;
    let count = |name: &str| -> Result<u64> { Ok(row.try_get::<i64, _>(name)?.max(0) as u64) };
    let mut out = Vec::with_capacity(Feature::ALL.len());
    for feature in Feature::ALL {
        let used = match feature {
            Feature::ApiKeys => count("api_keys")?,
            Feature::Webhooks => count("webhooks")?,
            Feature::Members => count("members")?,
            Feature::ApiCalls => count("api_calls")?,
            Feature::Storage => count("storage")?,
            Feature::PixelEvents => 0,
            records_feature => records[records_feature.as_str()].as_u64().unwrap_or(0),
        };
        out.push((feature, used));
    }
    Ok((tier, out))
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
    let (tier, usage) = usage(state, &auth.workspace_id).await?;
    let used = usage
        .iter()
        .find(|(f, _)| *f == feature)
        .map_or(0, |(_, used)| *used);
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
    fn monthly_usage_resets_at_the_next_utc_month() {
        let at = |y, m, d| {
            Utc.with_ymd_and_hms(y, m, d, 13, 5, 0)
                .single()
                .expect("time")
        };
        assert_eq!(
            next_month(at(2026, 12, 31)),
            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            next_month(at(2026, 2, 1)),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            month_start(at(2026, 2, 17)),
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap()
        );
    }

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
