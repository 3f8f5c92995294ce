//! Per-key usage: `last_used_at` and call counts, aggregated in memory on the request path
//! and written in batches by [`KeyUsage::flush`], never one write per request.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgPool;

#[derive(Debug)]
struct Pending {
    workspace_id: String,
    calls: i64,
    last_used_at: DateTime<Utc>,
}

/// Calls counted since the last flush, by key and hour.
#[derive(Debug, Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<(String, DateTime<Utc>), Pending>>,
}

impl KeyUsage {
    /// Counts one authenticated call by `key_id`.
    pub fn record(&self, key_id: &str, workspace_id: &str, at: DateTime<Utc>) {
        let hour = at.duration_trunc(TimeDelta::hours(1)).unwrap_or(at);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(&(key_id.to_string(), hour)) {
            Some(entry) => {
                entry.calls += 1;
                entry.last_used_at = entry.last_used_at.max(at);
            }
            None => {
                pending.insert(
                    (key_id.to_string(), hour),
                    Pending {
                        workspace_id: workspace_id.to_string(),
                        calls: 1,
                        last_used_at: at,
                    },
                );
            }
        }
    }

    /// Writes what was counted; on failure the counts are put back for the next flush.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch: Vec<((String, DateTime<Utc>), Pending)> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let mut keys = Vec::with_capacity(batch.len());
        let mut workspaces = Vec::with_capacity(batch.len());
        let mut hours = Vec::with_capacity(batch.len());
        let mut calls = Vec::with_capacity(batch.len());
        let mut last = Vec::with_capacity(batch.len());
        for ((key, hour), pending) in &batch {
            keys.push(key.clone());
            workspaces.push(pending.workspace_id.clone());
            hours.push(*hour);
            calls.push(pending.calls);
            last.push(pending.last_used_at);
        }
        let written = async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO api_key_usage_hourly (key_id, workspace_id, hour, calls)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
                 ON CONFLICT (key_id, hour) DO UPDATE SET calls = api_key_usage_hourly.calls + excluded.calls",
            )
            .bind(&keys)
            .bind(&workspaces)
            .bind(&hours)
            .bind(&calls)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO api_key_usage (key_id, workspace_id, last_used_at, calls)
                 SELECT key_id, min(workspace_id), max(last_used_at), sum(calls)::bigint
                   FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[])
                        AS u(key_id, workspace_id, last_used_at, calls)
                  GROUP BY key_id
                 ON CONFLICT (key_id) DO UPDATE
                    SET last_used_at = greatest(api_key_usage.last_used_at, excluded.last_used_at),
                        calls = api_key_usage.calls + excluded.calls",
            )
            .bind(&keys)
            .bind(&workspaces)
            .bind(&last)
            .bind(&calls)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(error) = written {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for ((key, hour), item) in batch {
                let entry = pending.entry((key, hour)).or_insert(Pending {
                    workspace_id: item.workspace_id.clone(),
                    calls: 0,
                    last_used_at: item.last_used_at,
                });
                entry.calls += item.calls;
                entry.last_used_at = entry.last_used_at.max(item.last_used_at);
            }
            return Err(error);
        }
        Ok(batch.len())
    }
}
