//! The tier catalog: what each plan allows, feature by feature.
//!
//! A [`Feature`] is either counted (live items: created minus deleted) or metered per
//! UTC calendar month (API calls, pixel events), or a size (storage bytes). Each tier
//! gives each feature a limit, or none ([`Tier::limit`]); the rate limit and burst per
//! tier are [`Tier::rate_limit`].

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::workspace::Tier;

/// Something a tier limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    Projects,
    Tasks,
    Contacts,
    Companies,
    Deals,
    Documents,
    ApiKeys,
    Webhooks,
    Members,
    /// Authenticated API calls per UTC month.
    ApiCalls,
    /// Pixel events per UTC month.
    PixelEvents,
    /// Stored bytes.
    Storage,
}

/// How a feature's usage is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Live items now: created minus deleted.
    Current,
    /// Since the start of the UTC calendar month; resets then.
    Monthly,
}

impl Feature {
    pub const ALL: [Feature; 12] = [
        Self::Projects,
        Self::Tasks,
        Self::Contacts,
        Self::Companies,
        Self::Deals,
        Self::Documents,
        Self::ApiKeys,
        Self::Webhooks,
        Self::Members,
        Self::ApiCalls,
        Self::PixelEvents,
        Self::Storage,
    ];

    /// The feature as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Projects => "projects",
            Self::Tasks => "tasks",
            Self::Contacts => "contacts",
            Self::Companies => "companies",
            Self::Deals => "deals",
            Self::Documents => "documents",
            Self::ApiKeys => "api_keys",
            Self::Webhooks => "webhooks",
            Self::Members => "members",
            Self::ApiCalls => "api_calls",
            Self::PixelEvents => "pixel_events",
            Self::Storage => "storage",
        }
    }

    pub fn parse(value: &str) -> Option<Feature> {
        Self::ALL.into_iter().find(|f| f.as_str() == value)
    }

    pub fn period(self) -> Period {
        match self {
            Self::ApiCalls | Self::PixelEvents => Period::Monthly,
            _ => Period::Current,
        }
    }

    /// The unit of a feature not counted in items.
    pub fn unit(self) -> Option<&'static str> {
        match self {
            Self::ApiCalls => Some("calls"),
            Self::PixelEvents => Some("events"),
            Self::Storage => Some("bytes"),
            _ => None,
        }
    }
}

/// The start of the UTC month `at` is in: when monthly usage started counting.
pub fn month_start(at: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// The start of the UTC month after the one `at` is in: when monthly usage resets.
pub fn next_month(at: DateTime<Utc>) -> DateTime<Utc> {
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

const MB: u64 = 1024 * 1024;

impl Tier {
    /// The most of `feature` this tier allows; `None`: no limit.
    pub fn limit(self, feature: Feature) -> Option<u64> {
        // free, starter, pro, agency; enterprise has no limits.
        let row: [u64; 4] = match feature {
            Feature::Projects => [5, 50, 500, 5_000],
            Feature::Tasks => [200, 5_000, 50_000, 500_000],
            Feature::Contacts => [200, 2_000, 20_000, 200_000],
            Feature::Companies => [100, 1_000, 10_000, 100_000],
            Feature::Deals => [50, 500, 5_000, 50_000],
            Feature::Documents => [50, 500, 5_000, 50_000],
            Feature::ApiKeys => [25, 100, 500, 2_000],
            Feature::Webhooks => [5, 25, 100, 500],
            Feature::Members => [5, 25, 100, 1_000],
            Feature::ApiCalls => [10_000, 250_000, 2_500_000, 25_000_000],
            Feature::PixelEvents => [10_000, 250_000, 2_500_000, 25_000_000],
            Feature::Storage => [100 * MB, 10 * 1024 * MB, 100 * 1024 * MB, 1024 * 1024 * MB],
        };
        match self {
            Self::Free => Some(row[0]),
            Self::Starter => Some(row[1]),
            Self::Pro => Some(row[2]),
            Self::Agency => Some(row[3]),
            Self::Enterprise => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_feature_round_trips_and_limits_grow_with_the_tier() {
        for feature in Feature::ALL {
            assert_eq!(Feature::parse(feature.as_str()), Some(feature));
            assert_eq!(
                serde_json::to_value(feature).expect("json"),
                feature.as_str()
            );
            let limits: Vec<u64> = Tier::ALL
                .into_iter()
                .filter_map(|t| t.limit(feature))
                .collect();
            assert_eq!(
                limits.len(),
                4,
                "{feature:?}: enterprise alone is unlimited"
            );
            assert!(limits.windows(2).all(|w| w[0] < w[1]), "{feature:?}");
        }
        assert_eq!(Tier::Free.limit(Feature::Projects), Some(5));
        assert_eq!(Tier::Enterprise.limit(Feature::Tasks), None);
        assert_eq!(Feature::ApiCalls.period(), Period::Monthly);
        assert_eq!(Feature::parse("bogus"), None);
    }

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
}
