//! Usage as events: what product code records (`POST /entitlements/usage`), and the
//! alerts a workspace gets when a feature passes 80% and 100% of its limit.
//!
//! - [`UsageRecord`]: one recording, its own aggregate (a fresh id each time), so
//!   recordings never contend for one stream. Only metered features accept recorded
//!   usage; counted ones (projects, keys, ...) are counted from what exists.
//! - [`EntitlementPeriod`]: one workspace's alerts in one UTC month (id
//!   [`period_id`]). It records each (feature, threshold) at most once: asking again is a
//!   no-op, so any number of processes may ask, however often.

use chrono::{DateTime, Datelike, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::entitlements::{Feature, Period};
use crate::error::{DomainError, ValidationErrors};

/// Most one recording may add.
pub const MAX_QUANTITY: u64 = 1_000_000_000;
/// Largest `metadata` object, in bytes of its JSON.
pub const MAX_METADATA_BYTES: usize = 4096;

/// The thresholds alerted, in percent of the limit.
pub const THRESHOLDS: [u8; 2] = [80, 100];

/// The aggregate id of `workspace_id`'s alerts in the UTC month of `at`.
pub fn period_id(workspace_id: &str, at: DateTime<Utc>) -> String {
    format!("{workspace_id}:{:04}-{:02}", at.year(), at.month())
}

/// The thresholds `used` has reached of `limit` (none without a limit).
pub fn reached(used: u64, limit: Option<u64>) -> impl Iterator<Item = u8> {
    THRESHOLDS.into_iter().filter(move |threshold| {
        limit.is_some_and(|limit| {
            used.saturating_mul(100) >= limit.saturating_mul(*threshold as u64)
        })
    })
}

// Recorded usage ---------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageRecord {
    workspace_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum UsageCommand {
    RecordUsage {
        workspace_id: String,
        feature: Feature,
        quantity: u64,
        metadata: Option<Value>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UsageEvent {
    UsageRecorded {
        workspace_id: String,
        feature: Feature,
        quantity: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<Value>,
    },
}

impl DomainEvent for UsageEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UsageRecorded { .. } => "UsageRecorded".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

/// Field rules of a recording.
pub fn validate_recording(
    feature: Feature,
    quantity: u64,
    metadata: Option<&Value>,
) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    if feature.period() != Period::Monthly {
        errors.add(
            "feature",
            format!(
                "{} is counted from what exists; only metered features (api_calls, pixel_events) take recorded usage.",
                feature.as_str()
            ),
        );
    }
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        errors.add(
            "quantity",
            format!("The quantity must be from 1 to {MAX_QUANTITY}."),
        );
    }
    match metadata {
        None => {}
        Some(Value::Object(map))
            if serde_json::to_vec(map).map_or(usize::MAX, |b| b.len()) > MAX_METADATA_BYTES =>
        {
            errors.add(
                "metadata",
                format!("The metadata may not be larger than {MAX_METADATA_BYTES} bytes."),
            );
        }
        Some(Value::Object(_)) => {}
        Some(_) => errors.add("metadata", "The metadata must be an object."),
    }
    errors
}

impl crate::Tenanted for UsageRecord {
    fn tenant(&self, _: &str) -> Option<String> {
        self.workspace_id.clone()
    }
}

impl Aggregate for UsageRecord {
    const TYPE: &'static str = "UsageRecord";
    type Command = UsageCommand;
    type Event = UsageEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: UsageCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            UsageCommand::RecordUsage {
                workspace_id,
                feature,
                quantity,
                metadata,
            } => {
                if self.workspace_id.is_some() {
                    return Err(DomainError::AlreadyExists("usage record"));
                }
                validate_recording(feature, quantity, metadata.as_ref()).into_result()?;
                sink.write(
                    UsageEvent::UsageRecorded {
                        workspace_id,
                        feature,
                        quantity,
                        metadata,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: UsageEvent) {
        match event {
            UsageEvent::UsageRecorded { workspace_id, .. } => {
                self.workspace_id = Some(workspace_id)
            }
        }
    }
}

// Threshold alerts -------------------------------------------------------------------------

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EntitlementPeriod {
    workspace_id: Option<String>,
    /// (feature, threshold) already recorded this period.
    reached: Vec<(Feature, u8)>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub enum EntitlementCommand {
    /// Records that `feature` reached `threshold`% of `limit` this period, unless it was
    /// recorded already.
    ReachThreshold {
        workspace_id: String,
        feature: Feature,
        threshold: u8,
        used: u64,
        limit: u64,
        period_start: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EntitlementEvent {
    ThresholdReached {
        workspace_id: String,
        feature: Feature,
        /// 80 or 100 (percent of the limit).
        threshold: u8,
        /// Usage when it was noticed.
        used: u64,
        limit: u64,
        /// The start of the UTC month the alert belongs to.
        period_start: DateTime<Utc>,
    },
}

impl DomainEvent for EntitlementEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ThresholdReached { .. } => "ThresholdReached".into(),
        }
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl EntitlementPeriod {
    pub fn has_reached(&self, feature: Feature, threshold: u8) -> bool {
        self.reached.contains(&(feature, threshold))
    }
}

impl crate::Tenanted for EntitlementPeriod {
    fn tenant(&self, _: &str) -> Option<String> {
        self.workspace_id.clone()
    }
}

impl Aggregate for EntitlementPeriod {
    const TYPE: &'static str = "EntitlementPeriod";
    type Command = EntitlementCommand;
    type Event = EntitlementEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: EntitlementCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            EntitlementCommand::ReachThreshold {
                workspace_id,
                feature,
                threshold,
                used,
                limit,
                period_start,
            } => {
                if self
                    .workspace_id
                    .as_ref()
                    .is_some_and(|owner| *owner != workspace_id)
                {
                    return Err(DomainError::NotFound("entitlement period"));
                }
                if !THRESHOLDS.contains(&threshold) {
                    return Err(DomainError::Validation(ValidationErrors::single(
                        "threshold",
                        "Thresholds are 80 and 100.",
                    )));
                }
                if self.has_reached(feature, threshold) {
                    return Ok(());
                }
                sink.write(
                    EntitlementEvent::ThresholdReached {
                        workspace_id,
                        feature,
                        threshold,
                        used,
                        limit,
                        period_start,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: EntitlementEvent) {
        match event {
            EntitlementEvent::ThresholdReached {
                workspace_id,
                feature,
                threshold,
                ..
            } => {
                self.workspace_id = Some(workspace_id);
                self.reached.push((feature, threshold));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    #[test]
    fn thresholds_are_reached_at_80_and_100_percent() {
        assert_eq!(reached(3, Some(5)).count(), 0);
        assert_eq!(reached(4, Some(5)).collect::<Vec<_>>(), [80]);
        assert_eq!(reached(5, Some(5)).collect::<Vec<_>>(), [80, 100]);
        assert_eq!(reached(7_999, Some(10_000)).count(), 0);
        assert_eq!(reached(u64::MAX, None).count(), 0);
        let at = Utc.with_ymd_and_hms(2026, 3, 31, 23, 59, 59).unwrap();
        assert_eq!(period_id("ws_1", at), "ws_1:2026-03");
    }

    #[test]
    fn a_threshold_is_recorded_once_per_period() {
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let reach = |threshold| EntitlementCommand::ReachThreshold {
            workspace_id: "ws_1".into(),
            feature: Feature::Projects,
            threshold,
            used: 4,
            limit: 5,
            period_start: start,
        };
        let reached = EntitlementEvent::ThresholdReached {
            workspace_id: "ws_1".into(),
            feature: Feature::Projects,
            threshold: 80,
            used: 4,
            limit: 5,
            period_start: start,
        };
        TestFramework::<EntitlementPeriod>::with(())
            .given_no_previous_events()
            .when(reach(80))
            .then_expect_events(vec![reached.clone()]);
        TestFramework::<EntitlementPeriod>::with(())
            .given(vec![reached.clone()])
            .when(reach(80))
            .then_expect_events(vec![]);
        TestFramework::<EntitlementPeriod>::with(())
            .given(vec![reached])
            .when(reach(100))
            .then_expect_events(vec![EntitlementEvent::ThresholdReached {
                workspace_id: "ws_1".into(),
                feature: Feature::Projects,
                threshold: 100,
                used: 4,
                limit: 5,
                period_start: start,
            }]);
    }

    #[test]
    fn only_metered_features_take_recorded_usage() {
        assert!(validate_recording(Feature::ApiCalls, 3, None).is_empty());
        let errors = validate_recording(Feature::Projects, 0, Some(&Value::from(1)));
        assert_eq!(
            errors.fields().keys().collect::<Vec<_>>(),
            ["feature", "metadata", "quantity"]
        );
        let big = serde_json::json!({"x": "y".repeat(MAX_METADATA_BYTES)});
        assert!(!validate_recording(Feature::PixelEvents, 1, Some(&big)).is_empty());
    }
}
