//! Usage that arrives as events: recordings (`POST /entitlements/usage`) and pixel
//! events. Both land in `usage_minutes` beside the metered API calls, so `/usage`, the
//! rollups and the entitlement summary read one table.
//!
//! Their rows carry no key (`api_key_id = ''`): metered rows always name one, so the
//! projection's share of the table is exactly those rows, and a rebuild replaces only
//! them (the rollups follow through their statement triggers).

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use cqrs_es::Aggregate;
use pulsar_domain::entitlements::Feature;
use pulsar_domain::tracking::{PixelEvent, PixelEventEvent};
use pulsar_domain::usage::{UsageEvent, UsageRecord};
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// The subscriber's name.
pub const NAME: &str = "usage_events";

/// Keeps the event-fed rows of `usage_minutes`.
#[derive(Debug, Default)]
pub struct UsageProjection;

type Key = (String, &'static str, DateTime<Utc>);

fn counted(event: &StoredEvent) -> Result<Option<(Key, i64)>, ProjectionError> {
    let minute = event
        .recorded_at
        .duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(event.recorded_at);
    Ok(match event.aggregate_type.as_str() {
        UsageRecord::TYPE => match event.decode::<UsageRecord>()?.payload {
            UsageEvent::UsageRecorded {
                workspace_id,
                feature,
                quantity,
                ..
            } => Some((
                (workspace_id, feature.as_str(), minute),
                i64::try_from(quantity).unwrap_or(i64::MAX),
            )),
        },
        PixelEvent::TYPE => match event.decode::<PixelEvent>()?.payload {
            PixelEventEvent::PixelEventTracked { workspace_id, .. } => {
                Some(((workspace_id, Feature::PixelEvents.as_str(), minute), 1))
            }
        },
        _ => None,
    })
}

impl Projection for UsageProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[UsageRecord::TYPE, PixelEvent::TYPE]
    }

    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables {
            owned: vec![],
            shared: vec![("usage_minutes", "api_key_id = ''".into())],
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(conn, std::slice::from_ref(event)).await
    }

    /// One upsert per batch: counts summed per workspace, feature and minute.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut counts: BTreeMap<Key, i64> = BTreeMap::new();
        for event in events {
            if let Some((key, count)) = counted(event)? {
                let sum = counts.entry(key).or_default();
                *sum = sum.saturating_add(count);
            }
        }
        if counts.is_empty() {
            return Ok(());
        }
        let mut workspaces = Vec::with_capacity(counts.len());
        let mut features = Vec::with_capacity(counts.len());
        let mut minutes = Vec::with_capacity(counts.len());
        let mut values = Vec::with_capacity(counts.len());
        for ((workspace, feature, minute), count) in counts {
            workspaces.push(workspace);
            features.push(feature);
            minutes.push(minute);
            values.push(count);
        }
        sqlx::query(
            "INSERT INTO usage_minutes (workspace_id, feature, api_key_id, minute, count)
             SELECT w, f, '', m, c
               FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[]) AS u(w, f, m, c)
             ON CONFLICT (workspace_id, feature, minute, api_key_id)
             DO UPDATE SET count = usage_minutes.count + excluded.count",
        )
        .bind(&workspaces)
        .bind(&features)
        .bind(&minutes)
        .bind(&values)
        .execute(conn)
        .await?;
        Ok(())
    }
}
