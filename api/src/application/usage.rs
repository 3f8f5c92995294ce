//! Per-key usage: `last_used_at` and call counts by minute, aggregated in memory on the
//! request path and written in batches by [`KeyUsage::flush`], never one write per
//! request; and the analysts' query over them ([`query`]).

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

/// Calls counted since the last flush, by key and minute.
#[derive(Debug, Default)]
pub struct KeyUsage {
    pending: Mutex<HashMap<(String, DateTime<Utc>), Pending>>,
}

impl KeyUsage {
    /// Counts one authenticated call by `key_id`.
    pub fn record(&self, key_id: &str, workspace_id: &str, at: DateTime<Utc>) {
        let minute = at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(&(key_id.to_string(), minute)) {
            Some(entry) => {
                entry.calls += 1;
                entry.last_used_at = entry.last_used_at.max(at);
            }
            None => {
                pending.insert(
                    (key_id.to_string(), minute),
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
    /// Returns the workspaces whose calls were written.
    pub async fn flush(&self, pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
        let batch: Vec<((String, DateTime<Utc>), Pending)> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = Vec::with_capacity(batch.len());
        let mut workspaces = Vec::with_capacity(batch.len());
        let mut minutes = Vec::with_capacity(batch.len());
        let mut calls = Vec::with_capacity(batch.len());
        let mut last = Vec::with_capacity(batch.len());
        for ((key, minute), pending) in &batch {
            keys.push(key.clone());
            workspaces.push(pending.workspace_id.clone());
            minutes.push(*minute);
            calls.push(pending.calls);
            last.push(pending.last_used_at);
        }
        let written = async {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO usage_minutes (workspace_id, feature, api_key_id, minute, count)
                 SELECT w, 'api_calls', k, m, c
                   FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::bigint[]) AS u(k, w, m, c)
                 ON CONFLICT (workspace_id, feature, minute, api_key_id)
                 DO UPDATE SET count = usage_minutes.count + excluded.count",
            )
            .bind(&keys)
            .bind(&workspaces)
            .bind(&minutes)
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
            for ((key, minute), item) in batch {
                let entry = pending.entry((key, minute)).or_insert(Pending {
                    workspace_id: item.workspace_id.clone(),
                    calls: 0,
                    last_used_at: item.last_used_at,
                });
                entry.calls += item.calls;
                entry.last_used_at = entry.last_used_at.max(item.last_used_at);
            }
            return Err(error);
        }
        let mut flushed: Vec<String> = batch.into_iter().map(|(_, p)| p.workspace_id).collect();
        flushed.sort_unstable();
        flushed.dedup();
        Ok(flushed)
    }
}

/// Bucket sizes of `/usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
    Month,
}

impl Granularity {
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "minute" => Self::Minute,
            "hour" => Self::Hour,
            "day" => Self::Day,
            "month" => Self::Month,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The shortest bucket, for bounding how many a query may return.
    fn shortest(self) -> chrono::TimeDelta {
        match self {
            Self::Minute => TimeDelta::minutes(1),
            Self::Hour => TimeDelta::hours(1),
            Self::Day => TimeDelta::hours(23),
            Self::Month => TimeDelta::days(28),
        }
    }
}

/// What `/usage` is asked.
#[derive(Debug, Clone)]
pub struct UsageQuery {
    pub feature: Option<pulsar_domain::entitlements::Feature>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
    /// Group by key (else by feature).
    pub by_key: bool,
    pub api_key_ids: Vec<String>,
    /// An IANA zone name.
    pub tz: String,
}

/// Most buckets one query may span.
pub const MAX_BUCKETS: i64 = 50_000;
/// Most keys one query may name.
pub const MAX_KEYS: usize = 1_000;

/// One row of the series.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRow {
    /// The bucket's start in the query's time zone, RFC 3339 with that zone's offset.
    pub bucket: String,
    pub feature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
    pub count: i64,
}

/// The time zone names PostgreSQL knows, read once (`pg_timezone_names` reads the zone
/// files from disk: tens of milliseconds a query).
async fn zones(pool: &PgPool) -> Result<&'static std::collections::HashSet<String>, sqlx::Error> {
    static ZONES: tokio::sync::OnceCell<std::collections::HashSet<String>> =
        tokio::sync::OnceCell::const_new();
    ZONES
        .get_or_try_init(|| async {
            let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pg_timezone_names")
                .fetch_all(pool)
                .await?;
            Ok(names.into_iter().collect())
        })
        .await
}

/// Longest range checked hour by hour for the rollups; longer ones read the minutes.
const MAX_ROLLUP_HOURS: i64 = 5 * 366 * 24;

/// Whether `tz`'s offset from UTC is a multiple of `seconds` at every hour of
/// `[from, to)`: whole hours (not so for India, Nepal, Newfoundland, or old local mean
/// times), or with a day, zero (UTC and its aliases).
async fn offsets_divisible(
    pool: &PgPool,
    tz: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    seconds: i64,
) -> Result<bool, sqlx::Error> {
    if (to - from).num_hours() > MAX_ROLLUP_HOURS {
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT coalesce(bool_and(
                    extract(epoch FROM (h AT TIME ZONE $1) - (h AT TIME ZONE 'UTC'))::bigint % $4 = 0),
                true)
           FROM generate_series($2::timestamptz, $3::timestamptz, interval '1 hour') AS h",
    )
    .bind(tz)
    .bind(from)
    .bind(to)
    .bind(seconds)
    .fetch_one(pool)
    .await
}

/// A rollup that can serve part of a query: its table, time column and row width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rollup {
    table: &'static str,
    time: &'static str,
    step: TimeDelta,
    /// Whether its rows keep the key (else only whole-workspace series may read it).
    keyed: bool,
}

/// Per workspace and UTC hour.
const HOURS: Rollup = Rollup {
    table: "usage_hours",
    time: "hour",
    step: TimeDelta::hours(1),
    keyed: false,
};
/// Per key and UTC day.
const DAYS: Rollup = Rollup {
    table: "usage_days",
    time: "day",
    step: TimeDelta::days(1),
    keyed: true,
};

/// The coarsest rollup whose rows each fall inside one bucket of the query: days (days
/// or months, keyed, a zone at offset zero throughout), else hours (whole-workspace
/// series in a zone of whole-hour offsets), else none (the minutes). The whole rollup
/// rows inside `[from, to)` are read from it, the edges from the minutes.
async fn rollup(pool: &PgPool, query: &UsageQuery) -> Result<Option<Rollup>, sqlx::Error> {
    let whole_workspace = !query.by_key && query.api_key_ids.is_empty();
    let candidates: &[Rollup] = match (query.granularity, whole_workspace) {
        (Granularity::Minute, _) => &[],
        (Granularity::Hour, true) => &[HOURS],
        (Granularity::Hour, false) => &[],
        // A day of many keys is more rows than 24 hours of the whole workspace.
        (Granularity::Day | Granularity::Month, true) => &[HOURS],
        (Granularity::Day | Granularity::Month, false) => &[DAYS],
    };
    for candidate in candidates {
        let modulus = if candidate.step == DAYS.step {
            86_400
        } else {
            3_600
        };
        if (candidate.keyed || whole_workspace)
            && offsets_divisible(pool, &query.tz, query.from, query.to, modulus).await?
        {
            return Ok(Some(*candidate));
        }
    }
    Ok(None)
}

/// The first multiple of `step` (since the epoch) at or after `at`.
fn ceil(at: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    match at.duration_trunc(step) {
        Ok(floor) if floor == at => at,
        Ok(floor) => floor + step,
        Err(_) => at,
    }
}

/// The workspace's metered usage in buckets aligned to the query's time zone (days and
/// months follow its calendar, daylight saving time included).
pub async fn query(
    state: &super::AppState,
    auth: &super::Auth,
    query: &UsageQuery,
) -> super::Result<Vec<UsageRow>> {
    use super::Error;
    use pulsar_domain::scopes::{Action, Permission, Resource};

    auth.require(Permission(Resource::Usage, Action::Read))?;
    if query.from >= query.to {
        return Err(Error::invalid("from", "`from` must be before `to`."));
    }
    if (query.to - query.from).num_seconds() / query.granularity.shortest().num_seconds()
        > MAX_BUCKETS
    {
        return Err(Error::invalid(
            "granularity",
            format!("At most {MAX_BUCKETS} buckets per query; narrow the range or widen the granularity."),
        ));
    }
    if query.api_key_ids.len() > MAX_KEYS {
        return Err(Error::invalid(
            "api_key_id",
            format!("At most {MAX_KEYS} keys per query."),
        ));
    }
    if !zones(&state.pool).await?.contains(query.tz.as_str()) {
        return Err(Error::invalid(
            "tz",
            "The time zone must be an IANA name, e.g. Europe/Berlin.",
        ));
    }
    let key_column = if query.by_key { "api_key_id" } else { "''" };
    // Filters are written only when given, so each statement's plan can use the indexes
    // they allow (a generic `$7 = '{}' OR …` would hide them).
    let feature_filter = if query.feature.is_some() {
        "AND feature = $6"
    } else {
        ""
    };
    let key_filter = if query.api_key_ids.is_empty() {
        ""
    } else {
        "AND api_key_id = ANY($7)"
    };
    // Rows of [lo, hi) of one table; $4/$5 are the query's bounds, $8/$9 the rollup's
    // whole rows inside them.
    let part = |table: &str, time: &str, keyed: bool, lo: &str, hi: &str| {
        format!(
            "SELECT {time} AS at, feature, {key} AS key, count FROM {table}
              WHERE workspace_id = $1 AND {time} >= {lo} AND {time} < {hi}
                {feature_filter} {filter}",
            key = if keyed { key_column } else { "''" },
            filter = if keyed { key_filter } else { "" },
        )
    };
    let minutes = |lo, hi| part("usage_minutes", "minute", true, lo, hi);
    let (inner, inner_from, inner_to) = match rollup(&state.pool, query).await? {
        Some(r) => {
            let (lo, hi) = (
                ceil(query.from, r.step),
                query.to.duration_trunc(r.step).unwrap_or(query.to),
            );
            if lo < hi {
                let mut parts = vec![part(r.table, r.time, r.keyed, "$8", "$9")];
                if query.from < lo {
                    parts.push(minutes("$4", "$8"));
                }
                if hi < query.to {
                    parts.push(minutes("$9", "$5"));
                }
                (parts.join(" UNION ALL "), lo, hi)
            } else {
                (minutes("$4", "$5"), query.from, query.to)
            }
        }
        None => (minutes("$4", "$5"), query.from, query.to),
    };
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(&format!(
        // date_trunc with a zone truncates in that zone's calendar and returns the
        // instant, so the two 02:00 hours of a fall-back night stay two buckets.
        "WITH counted AS ({inner}),
         buckets AS (
             SELECT date_trunc($2, at, $3) AS bucket, feature, key, sum(count)::bigint AS count
               FROM counted
              WHERE ($6::text IS NULL OR true) AND cardinality($7::text[]) >= 0
                AND $4::timestamptz <= $5::timestamptz AND $8::timestamptz <= $9::timestamptz
              GROUP BY 1, 2, 3)
         SELECT to_char(local, 'YYYY-MM-DD\"T\"HH24:MI:SS')
                || CASE WHEN off < interval '0' THEN '-' ELSE '+' END
                || to_char(CASE WHEN off < interval '0' THEN -off ELSE off END, 'HH24:MI'),
                feature, key, count
           FROM (SELECT *, bucket AT TIME ZONE $3 AS local,
                        (bucket AT TIME ZONE $3) - (bucket AT TIME ZONE 'UTC') AS off
                   FROM buckets) b
          ORDER BY bucket, feature, key"
    ))
    .bind(&auth.workspace_id)
    .bind(query.granularity.as_str())
    .bind(&query.tz)
    .bind(query.from)
    .bind(query.to)
    .bind(query.feature.map(|f| f.as_str()))
    .bind(&query.api_key_ids)
    .bind(inner_from)
    .bind(inner_to)
    .fetch_all(&state.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(bucket, feature, key, count)| UsageRow {
            bucket,
            feature,
            api_key_id: query.by_key.then_some(key),
            count,
        })
        .collect())
}
