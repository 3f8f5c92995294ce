//! Threshold alerts: when a feature's usage reaches 80% or 100% of the tier's limit, the
//! workspace's `EntitlementPeriod` of the UTC month records `ThresholdReached`, which the
//! catalog publishes as `entitlements.threshold_reached` and webhooks deliver.
//!
//! The check is level-triggered: after anything that can raise a feature's usage (a
//! creation, recorded usage, a pixel event, a metering flush) [`observe`] reads the
//! feature's usage and asks for every threshold it is at or above. The aggregate records
//! each (feature, threshold) once per month, so asking again, from any process, is a
//! no-op; a check lost to a crash is made by the next change of that feature. A
//! process-local set remembers what was recorded, so repeated checks cost one read.

use std::collections::HashSet;
use std::sync::Mutex;

use pulsar_domain::entitlements::{month_start, Feature};
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::usage::{period_id, reached, EntitlementCommand, EntitlementPeriod};
use pulsar_domain::{Actor, EventMetadata};

use super::{AppState, Result};

/// Most remembered (workspace, feature, threshold, month) entries before forgetting them
/// all (a forgotten one costs one aggregate load, never a second alert).
const REMEMBERED: usize = 100_000;

/// What this process knows was recorded.
#[derive(Debug, Default)]
pub struct Alerted {
    seen: Mutex<HashSet<(String, Feature, u8, String)>>,
}

impl Alerted {
    fn contains(&self, key: &(String, Feature, u8, String)) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn insert(&self, key: (String, Feature, u8, String)) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(key);
    }
}

/// Records the thresholds `feature` of `workspace_id` has reached this month and not yet
/// announced.
pub async fn observe(state: &AppState, workspace_id: &str, feature: Feature) -> Result<()> {
    let (tier, used) = super::entitlements::used(state, workspace_id, feature).await?;
    let Some(limit) = tier.limit(feature) else {
        return Ok(());
    };
    let now = state.clock.now();
    let period = period_id(workspace_id, now);
    for threshold in reached(used, Some(limit)) {
        let key = (workspace_id.to_string(), feature, threshold, period.clone());
        if state.alerted.contains(&key) {
            continue;
        }
        let metadata = EventMetadata {
            actor: Actor::system(),
            request_id: ids::new_id(prefix::REQUEST),
            client_ip: String::new(),
            user_agent: "pulsar-entitlements".into(),
            workspace_id: None,
        };
        let command = EntitlementCommand::ReachThreshold {
            workspace_id: workspace_id.to_string(),
            feature,
            threshold,
            used,
            limit,
            period_start: month_start(now),
        };
        state
            .commands
            .execute::<EntitlementPeriod>(&period, command, &metadata, &[])
            .await?;
        state.alerted.insert(key);
    }
    Ok(())
}

/// [`observe`] in the background: the change that prompted it has already answered.
pub fn spawn_observe(state: &AppState, workspace_id: &str, feature: Feature) {
    let (state, workspace_id) = (state.clone(), workspace_id.to_string());
    tokio::spawn(async move {
        if let Err(error) = observe(&state, &workspace_id, feature).await {
            tracing::warn!(%error, workspace_id, feature = feature.as_str(), "threshold check failed; the next change retries it");
        }
    });
}
