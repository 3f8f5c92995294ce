//! Workers: claim due deliveries, send them, record what came of it.
//!
//! A claim is one transaction: due rows are locked with `FOR UPDATE SKIP LOCKED` (so any
//! number of processes can claim side by side without waiting on each other or taking
//! the same row), their attempt number is raised and their due time pushed to the end of
//! a lease. The attempt number is the fencing token: a result is written only while the
//! row still carries it, so a worker that outlived its lease cannot overwrite the work of
//! the one that reclaimed the row. A worker that dies leaves its rows due again when the
//! lease ends.
//!
//! Results are written in batches (attempts, delivery status, endpoint counters) by one
//! recorder task per process, so a busy dispatcher spends a few statements per batch, not
//! per delivery.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use pulsar_projections::Position;
use rand::Rng;
use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::config::DispatcherConfig;
use crate::fanout::ENDPOINT_STOPPED;
use crate::guard::Guard;
use crate::secrets::SecretBox;
use crate::send::{self, Outcome, Request};

/// What the dispatcher asks of the write side: disabling an endpoint is a command (an
/// event in the log), which only the application can issue.
pub trait EndpointControl: Send + Sync + 'static {
    /// Disables `endpoint_id` with `reason` (a no-op if it is inactive already).
    fn disable<'a>(
        &'a self,
        endpoint_id: &'a str,
        reason: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Why an endpoint that answered 410 was disabled.
pub const GONE_REASON: &str = "The endpoint answered 410 Gone.";

/// A claimed delivery, with what sending it needs.
#[derive(Debug)]
struct Claimed {
    id: String,
    endpoint_id: String,
    event_id: String,
    event_type: String,
    /// The attempt this claim makes (the fencing token).
    attempt: i32,
    round_base: i32,
    body: String,
    url: Option<String>,
    active: bool,
    sealed_secrets: Vec<Vec<u8>>,
    /// When the endpoint's rate limit lets it go.
    send_at: Option<DateTime<Utc>>,
}

/// A finished attempt on its way to the recorder.
#[derive(Debug)]
struct Finished {
    claimed: Claimed,
    outcome: Outcome,
    /// Not sent at all (endpoint stopped): fail without recording an attempt.
    stopped: bool,
}

/// The delivery side of one process.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    config: DispatcherConfig,
    guard: Guard,
    client: reqwest::Client,
    secrets: SecretBox,
    control: Arc<dyn EndpointControl>,
    /// Wakes the claim loop (new deliveries, retries due soon).
    wake: Notify,
    /// The earliest retry this process scheduled, so it sleeps no longer than that.
    next_due: Mutex<Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher").finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub fn new(
        pool: PgPool,
        config: DispatcherConfig,
        secrets: SecretBox,
        control: Arc<dyn EndpointControl>,
    ) -> Result<Self, reqwest::Error> {
        let guard = Guard::new(config.allow_cidrs.clone(), config.allow_http);
        let client = guard.client(config.request_timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                config,
                guard,
                client,
                secrets,
                control,
                wake: Notify::new(),
                next_due: Mutex::new(None),
            }),
        })
    }

    /// The box sealing signing secrets at rest.
    pub fn secrets(&self) -> &SecretBox {
        &self.inner.secrets
    }

    /// The SSRF guard endpoint URLs are checked with.
    pub fn guard(&self) -> &Guard {
        &self.inner.guard
    }

    /// Sends one message to an endpoint now and returns what came of it, recording
    /// nothing: `POST /webhooks/{id}/test`.
    pub async fn send_now(
        &self,
        endpoint_id: &str,
        url: &str,
        message_id: &str,
        event_type: &str,
        body: &str,
    ) -> Result<Outcome, sqlx::Error> {
        let inner = &self.inner;
        let sealed: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT sealed FROM webhook_secrets
              WHERE endpoint_id = $1 AND (valid_until IS NULL OR valid_until > now())
              ORDER BY valid_until IS NULL DESC, created_at DESC",
        )
        .bind(endpoint_id)
        .fetch_all(&inner.pool)
        .await?;
        let secrets: Vec<String> = sealed
            .iter()
            .filter_map(|s| inner.secrets.open(endpoint_id, s).ok())
            .collect();
        if secrets.is_empty() {
            return Ok(Outcome::failed(
                Utc::now(),
                "the endpoint has no signing secret",
            ));
        }
        let delivery_id = pulsar_domain::ids::new_id(pulsar_domain::ids::prefix::DELIVERY);
        let request = Request {
            url,
            message_id,
            delivery_id: &delivery_id,
            event_type,
            body,
            secrets: &secrets,
        };
        Ok(send::send(
            &inner.client,
            &inner.guard,
            &request,
            inner.config.response_body_limit,
        )
        .await)
    }

    /// Wakes the claim loop now (work was queued by this process).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Claims and sends until `shutdown`, waking when the fan-out's checkpoint moves
    /// (`fanout_progress`), when a retry falls due, or every poll interval. In-flight
    /// sends finish and are recorded before it returns.
    pub async fn run(
        self,
        mut fanout_progress: Option<watch::Receiver<Position>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let inner = &self.inner;
        let concurrency = inner.config.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(concurrency));
        let (results, received) = mpsc::channel::<Finished>(concurrency * 2);
        let recorder = tokio::spawn(self.clone().record_loop(received));
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                break;
            }
            // Wait for room before claiming: never hold a lease on work we cannot start.
            let Ok(first) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let free = permits.available_permits() + 1;
            let limit = i64::try_from(free.min(500)).unwrap_or(500);
            let claimed = match self.claim(limit).await {
                Ok(claimed) => {
                    backoff = Duration::from_millis(100);
                    claimed
                }
                Err(error) => {
                    tracing::warn!(%error, "could not claim webhook deliveries; retrying");
                    drop(first);
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let full = i64::try_from(claimed.len()).unwrap_or(0) >= limit;
            let mut first = Some(first);
            for item in claimed {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => match Arc::clone(&permits).acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let this = self.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let finished = this.deliver(item).await;
                    let _ = results.send(finished).await;
                    drop(permit);
                });
            }
            drop(first);
            if full {
                continue;
            }
            let sleep = self.idle_sleep();
            tokio::select! {
                _ = inner.wake.notified() => {}
                _ = changed(&mut fanout_progress) => {}
                _ = tokio::time::sleep(sleep) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        // Let in-flight sends finish, then the recorder drains.
        let _ = permits.acquire_many(concurrency as u32).await;
        drop(results);
        let _ = recorder.await;
    }

    /// How long an idle loop may sleep: the poll interval, or less if a retry this
    /// process scheduled falls due sooner.
    fn idle_sleep(&self) -> Duration {
        let poll = self.inner.config.poll_interval;
        let mut next_due = self
            .inner
            .next_due
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match *next_due {
            Some(at) => {
                let until = (at - Utc::now()).to_std().unwrap_or_default();
                if until <= poll {
                    *next_due = None;
                }
                until.min(poll)
            }
            None => poll,
        }
    }

    fn note_due(&self, at: DateTime<Utc>) {
        let mut next_due = self
            .inner
            .next_due
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if next_due.is_none_or(|current| at < current) {
            *next_due = Some(at);
        }
    }

    /// Claims up to `limit` due deliveries, pacing rate-limited endpoints.
    async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let mut tx = self.inner.pool.begin().await?;
        let due: Vec<(String, String, Option<i32>)> = sqlx::query_as(
            "SELECT d.id, d.endpoint_id, r.rate_limit
               FROM webhook_deliveries d
               LEFT JOIN webhook_routes r ON r.endpoint_id = d.endpoint_id
              WHERE d.status IN ('pending', 'retrying') AND d.next_attempt_at <= now()
              ORDER BY d.next_attempt_at
              LIMIT $1
                FOR UPDATE OF d SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        let (send_at, deferred) = pace(&mut tx, &due).await?;
        if !deferred.is_empty() {
            let (ids, at): (Vec<&str>, Vec<DateTime<Utc>>) =
                deferred.iter().map(|(id, at)| (id.as_str(), *at)).unzip();
            sqlx::query(
                "UPDATE webhook_deliveries d SET next_attempt_at = u.at
                   FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at) WHERE d.id = u.id",
            )
            .bind(&ids)
            .bind(&at)
            .execute(&mut *tx)
            .await?;
            if let Some(at) = at.iter().min() {
                self.note_due(*at);
            }
        }
        let ids: Vec<&str> = due
            .iter()
            .map(|(id, _, _)| id.as_str())
            .filter(|id| !deferred.iter().any(|(d, _)| d == id))
            .collect();
        let lease = self.inner.config.lease.as_secs_f64() + 1.0;
        let rows = sqlx::query(
            "WITH c AS (
                 UPDATE webhook_deliveries d
                    SET attempt = d.attempt + 1,
                        next_attempt_at = now() + make_interval(secs => $2),
                        updated_at = now()
                  WHERE d.id = ANY($1)
              RETURNING d.id, d.endpoint_id, d.event_id, d.event_type, d.attempt, d.round_base)
             SELECT c.id, c.endpoint_id, c.event_id, c.event_type, c.attempt, c.round_base,
                    m.body, r.url, coalesce(r.active, false) AS active,
                    ARRAY(SELECT s.sealed FROM webhook_secrets s
                           WHERE s.endpoint_id = c.endpoint_id
                             AND (s.valid_until IS NULL OR s.valid_until > now())
                           ORDER BY s.valid_until IS NULL DESC, s.created_at DESC) AS secrets
               FROM c
               JOIN webhook_messages m ON m.event_id = c.event_id
               LEFT JOIN webhook_routes r ON r.endpoint_id = c.endpoint_id",
        )
        .bind(&ids)
        .bind(lease)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                Ok(Claimed {
                    send_at: send_at.get(&id).copied(),
                    id,
                    endpoint_id: row.try_get("endpoint_id")?,
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    attempt: row.try_get("attempt")?,
                    round_base: row.try_get("round_base")?,
                    body: row.try_get("body")?,
                    url: row.try_get("url")?,
                    active: row.try_get("active")?,
                    sealed_secrets: row.try_get("secrets")?,
                })
            })
            .collect()
    }

    /// Sends one claimed delivery (after its pacing slot).
    async fn deliver(&self, claimed: Claimed) -> Finished {
        let inner = &self.inner;
        let (Some(url), true) = (claimed.url.clone(), claimed.active) else {
            return Finished {
                outcome: Outcome::failed(Utc::now(), ENDPOINT_STOPPED),
                claimed,
                stopped: true,
            };
        };
        if let Some(at) = claimed.send_at {
            if let Ok(wait) = (at - Utc::now()).to_std() {
                tokio::time::sleep(wait).await;
            }
        }
        let secrets: Result<Vec<String>, _> = claimed
            .sealed_secrets
            .iter()
            .map(|sealed| inner.secrets.open(&claimed.endpoint_id, sealed))
            .collect();
        let outcome = match secrets {
            Ok(secrets) if !secrets.is_empty() => {
                let request = Request {
                    url: &url,
                    message_id: &claimed.event_id,
                    delivery_id: &claimed.id,
                    event_type: &claimed.event_type,
                    body: &claimed.body,
                    secrets: &secrets,
                };
                send::send(
                    &inner.client,
                    &inner.guard,
                    &request,
                    inner.config.response_body_limit,
                )
                .await
            }
            Ok(_) => Outcome::failed(Utc::now(), "the endpoint has no signing secret"),
            Err(error) => {
                tracing::error!(endpoint_id = %claimed.endpoint_id, %error, "cannot sign a delivery");
                Outcome::failed(Utc::now(), "the signing secret could not be read")
            }
        };
        Finished {
            claimed,
            outcome,
            stopped: false,
        }
    }

    /// Writes results in batches until the channel closes.
    async fn record_loop(self, mut received: mpsc::Receiver<Finished>) {
        let mut batch = Vec::with_capacity(256);
        while received.recv_many(&mut batch, 256).await > 0 {
            let mut delay = Duration::from_millis(50);
            for tries in 1.. {
                match self.record(&batch).await {
                    Ok(()) => break,
                    // The rows stay leased: when the lease ends they are claimed and sent
                    // again (delivery is at least once), so a batch is never lost.
                    Err(error) if tries >= 8 => {
                        tracing::error!(%error, deliveries = batch.len(),
                            "could not record webhook attempts; they will be sent again");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not record webhook attempts; retrying");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            batch.clear();
        }
    }

    /// Records one batch of results in one transaction, then disables endpoints that
    /// must be.
    async fn record(&self, batch: &[Finished]) -> Result<(), sqlx::Error> {
        let config = &self.inner.config;
        let mut rows = DeliveryRows::default();
        let mut attempts = AttemptRows::default();
        let mut stats: HashMap<&str, EndpointTally> = HashMap::new();
        let mut gone: Vec<&str> = Vec::new();
        for finished in batch {
            let claimed = &finished.claimed;
            let outcome = &finished.outcome;
            let (status, next) = if finished.stopped {
                ("failed", None)
            } else if outcome.succeeded() {
                ("success", None)
            } else if outcome.gone() {
                gone.push(&claimed.endpoint_id);
                ("failed", None)
            } else {
                match next_attempt(config, claimed.attempt - claimed.round_base, outcome) {
                    Some(at) => {
                        self.note_due(at);
                        ("retrying", Some(at))
                    }
                    None => ("dead", None),
                }
            };
            rows.push(claimed, status, next, outcome);
            if !finished.stopped {
                attempts.push(claimed, outcome);
                stats.entry(&claimed.endpoint_id).or_default().add(outcome);
            }
        }
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, number, status_code, duration_ms, error,
                                           response_body, attempted_at)
             SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::text[],
                                  $6::text[], $7::timestamptz[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&attempts.delivery_id)
        .bind(&attempts.number)
        .bind(&attempts.status_code)
        .bind(&attempts.duration_ms)
        .bind(&attempts.error)
        .bind(&attempts.response_body)
        .bind(&attempts.attempted_at)
        .execute(&mut *tx)
        .await?;
        // Fenced by the attempt number; a success is kept even if the endpoint stopped
        // meanwhile (it was delivered).
        sqlx::query(
            "UPDATE webhook_deliveries d
                SET status = u.status, next_attempt_at = u.next, response_code = u.code,
                    last_error = u.error, delivered_at = coalesce(u.delivered, d.delivered_at),
                    updated_at = now()
               FROM unnest($1::text[], $2::int[], $3::text[], $4::timestamptz[], $5::int[],
                           $6::text[], $7::timestamptz[])
                    AS u(id, attempt, status, next, code, error, delivered)
              WHERE d.id = u.id AND d.attempt = u.attempt
                AND (d.status IN ('pending', 'retrying') OR u.status = 'success')",
        )
        .bind(&rows.id)
        .bind(&rows.attempt)
        .bind(&rows.status)
        .bind(&rows.next)
        .bind(&rows.code)
        .bind(&rows.error)
        .bind(&rows.delivered)
        .execute(&mut *tx)
        .await?;
        let mut tallies = TallyRows::default();
        for (endpoint, tally) in &stats {
            tallies.push(endpoint, tally);
        }
        let failing: Vec<(String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "UPDATE webhook_stats s
                SET success_count = s.success_count + u.ok,
                    failure_count = s.failure_count + u.bad,
                    consecutive_failures = CASE WHEN u.last_ok IS NOT NULL THEN u.trail
                                                ELSE s.consecutive_failures + u.trail END,
                    last_delivery_at = greatest(s.last_delivery_at, u.last_at),
                    last_success_at = coalesce(u.last_ok, s.last_success_at),
                    failing_since = CASE WHEN u.last_ok IS NOT NULL THEN u.first_fail_after_ok
                                         ELSE coalesce(s.failing_since, u.first_fail_after_ok) END
               FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::int[], $5::timestamptz[],
                           $6::timestamptz[], $7::timestamptz[])
                    AS u(endpoint_id, ok, bad, trail, last_at, last_ok, first_fail_after_ok)
              WHERE s.endpoint_id = u.endpoint_id
          RETURNING s.endpoint_id, s.failing_since",
        )
        .bind(&tallies.endpoint_id)
        .bind(&tallies.ok)
        .bind(&tallies.bad)
        .bind(&tallies.trailing)
        .bind(&tallies.last_at)
        .bind(&tallies.last_ok)
        .bind(&tallies.first_fail_after_ok)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;

        let window = chrono::Duration::from_std(config.disable_after)
            .unwrap_or_else(|_| chrono::Duration::days(5));
        let now = Utc::now();
        let mut disable: Vec<(&str, String)> = Vec::new();
        gone.sort_unstable();
        gone.dedup();
        for endpoint in gone {
            disable.push((endpoint, GONE_REASON.to_string()));
        }
        for (endpoint, since) in &failing {
            if let Some(since) = since.filter(|since| now - *since >= window) {
                if disable.iter().all(|(e, _)| e != endpoint) {
                    disable.push((
                        endpoint,
                        format!(
                            "No delivery succeeded since {} ({} without a success).",
                            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            humanize(config.disable_after)
                        ),
                    ));
                }
            }
        }
        for (endpoint, reason) in disable {
            match self.inner.control.disable(endpoint, &reason).await {
                Ok(()) => {
                    tracing::info!(endpoint_id = endpoint, reason, "webhook endpoint disabled")
                }
                Err(error) => {
                    tracing::warn!(endpoint_id = endpoint, %error, "could not disable a webhook endpoint")
                }
            }
        }
        Ok(())
    }
}

async fn changed(progress: &mut Option<watch::Receiver<Position>>) {
    match progress {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending::<()>().await,
    }
}

/// Pacing for rate-limited endpoints (GCRA over `webhook_stats.paced_until`, locked for
/// the claim): each delivery gets a send slot `1 / rate_limit` seconds after the last;
/// those whose slot is more than a second away are not claimed but made due at the
/// endpoint's next free slot. Delayed, never failed.
async fn pace(
    tx: &mut sqlx::PgConnection,
    due: &[(String, String, Option<i32>)],
) -> Result<(HashMap<String, DateTime<Utc>>, Vec<(String, DateTime<Utc>)>), sqlx::Error> {
    let mut send_at = HashMap::new();
    let mut deferred = Vec::new();
    let mut endpoints: Vec<&str> = due
        .iter()
        .filter(|(_, _, rate)| rate.is_some_and(|r| r > 0))
        .map(|(_, endpoint, _)| endpoint.as_str())
        .collect();
    if endpoints.is_empty() {
        return Ok((send_at, deferred));
    }
    endpoints.sort_unstable();
    endpoints.dedup();
    let rows: Vec<(String, Option<DateTime<Utc>>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT endpoint_id, paced_until, now() FROM webhook_stats
          WHERE endpoint_id = ANY($1) ORDER BY endpoint_id FOR UPDATE",
    )
    .bind(&endpoints)
    .fetch_all(&mut *tx)
    .await?;
    let mut updated_ids = Vec::new();
    let mut updated_at = Vec::new();
    for (endpoint, paced_until, now) in rows {
        let mut tat = paced_until.filter(|p| *p > now).unwrap_or(now);
        let horizon = now + chrono::Duration::seconds(1);
        for (id, _, rate) in due.iter().filter(|(_, e, _)| *e == endpoint) {
            let rate = rate.unwrap_or(1).max(1);
            let interval = chrono::Duration::microseconds(1_000_000 / i64::from(rate));
            if tat <= horizon {
                send_at.insert(id.clone(), tat);
                tat += interval;
            } else {
                deferred.push((id.clone(), tat));
            }
        }
        updated_ids.push(endpoint);
        updated_at.push(tat);
    }
    sqlx::query(
        "UPDATE webhook_stats s SET paced_until = u.at
           FROM unnest($1::text[], $2::timestamptz[]) AS u(endpoint_id, at)
          WHERE s.endpoint_id = u.endpoint_id",
    )
    .bind(&updated_ids)
    .bind(&updated_at)
    .execute(&mut *tx)
    .await?;
    Ok((send_at, deferred))
}

/// When attempt `round_attempt` (1-based within its round) failed with `outcome`, the
/// next try: the schedule's delay with ±20% jitter, never sooner than the receiver's
/// `Retry-After` (bounded); `None` after the last attempt.
pub fn next_attempt(
    config: &DispatcherConfig,
    round_attempt: i32,
    outcome: &Outcome,
) -> Option<DateTime<Utc>> {
    let index = usize::try_from(round_attempt.max(1) - 1).ok()?;
    let delay = *config.retry_schedule.get(index)?;
    let jitter = rand::thread_rng().gen_range(0.8..=1.2);
    let mut wait = delay.mul_f64(jitter);
    if let Some(asked) = outcome.retry_after {
        wait = wait.max(asked.min(config.max_retry_after));
    }
    Some(outcome.attempted_at + chrono::Duration::from_std(wait).ok()?)
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        s if s >= 86400 && s % 86400 == 0 => format!("{} days", s / 86400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} minutes", s / 60),
        s if s > 0 => format!("{s} seconds"),
        _ => format!("{} ms", duration.as_millis()),
    }
}

#[derive(Default)]
struct DeliveryRows {
    id: Vec<String>,
    attempt: Vec<i32>,
    status: Vec<&'static str>,
    next: Vec<Option<DateTime<Utc>>>,
    code: Vec<Option<i32>>,
    error: Vec<Option<String>>,
    delivered: Vec<Option<DateTime<Utc>>>,
}

impl DeliveryRows {
    fn push(
        &mut self,
        claimed: &Claimed,
        status: &'static str,
        next: Option<DateTime<Utc>>,
        outcome: &Outcome,
    ) {
        self.id.push(claimed.id.clone());
        self.attempt.push(claimed.attempt);
        self.status.push(status);
        self.next.push(next);
        self.code.push(outcome.status_code.map(i32::from));
        self.error.push(outcome.summary());
        self.delivered
            .push((status == "success").then_some(outcome.attempted_at));
    }
}

#[derive(Default)]
struct AttemptRows {
    delivery_id: Vec<String>,
    number: Vec<i32>,
    status_code: Vec<Option<i32>>,
    duration_ms: Vec<i32>,
    error: Vec<Option<String>>,
    response_body: Vec<Option<String>>,
    attempted_at: Vec<DateTime<Utc>>,
}

impl AttemptRows {
    fn push(&mut self, claimed: &Claimed, outcome: &Outcome) {
        self.delivery_id.push(claimed.id.clone());
        self.number.push(claimed.attempt);
        self.status_code.push(outcome.status_code.map(i32::from));
        self.duration_ms.push(outcome.duration_ms);
        self.error.push(outcome.error.clone());
        self.response_body.push(outcome.response_body.clone());
        self.attempted_at.push(outcome.attempted_at);
    }
}

/// One endpoint's results in a batch, in the order they finished.
#[derive(Default)]
struct EndpointTally {
    ok: i64,
    bad: i64,
    /// Failures after the last success in the batch (all of them if none succeeded).
    trailing: i32,
    last_at: Option<DateTime<Utc>>,
    last_ok: Option<DateTime<Utc>>,
    first_fail_after_ok: Option<DateTime<Utc>>,
}

impl EndpointTally {
    fn add(&mut self, outcome: &Outcome) {
        let at = outcome.attempted_at;
        self.last_at = Some(self.last_at.map_or(at, |l| l.max(at)));
        if outcome.succeeded() {
            self.ok += 1;
            self.trailing = 0;
            self.last_ok = Some(at);
            self.first_fail_after_ok = None;
        } else {
            self.bad += 1;
            self.trailing += 1;
            self.first_fail_after_ok.get_or_insert(at);
        }
    }
}

#[derive(Default)]
struct TallyRows {
    endpoint_id: Vec<String>,
    ok: Vec<i64>,
    bad: Vec<i64>,
    trailing: Vec<i32>,
    last_at: Vec<Option<DateTime<Utc>>>,
    last_ok: Vec<Option<DateTime<Utc>>>,
    first_fail_after_ok: Vec<Option<DateTime<Utc>>>,
}

impl TallyRows {
    fn push(&mut self, endpoint: &str, tally: &EndpointTally) {
        self.endpoint_id.push(endpoint.to_string());
        self.ok.push(tally.ok);
        self.bad.push(tally.bad);
        self.trailing.push(tally.trailing);
        self.last_at.push(tally.last_at);
        self.last_ok.push(tally.last_ok);
        self.first_fail_after_ok.push(tally.first_fail_after_ok);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed_at(at: DateTime<Utc>, retry_after: Option<Duration>) -> Outcome {
        Outcome {
            retry_after,
            ..Outcome::failed(at, "HTTP 500")
        }
    }

    #[test]
    fn schedule_with_jitter_then_dead() {
        let config = DispatcherConfig {
            retry_schedule: vec![Duration::from_secs(10), Duration::from_secs(100)],
            ..DispatcherConfig::default()
        };
        let at = Utc::now();
        for _ in 0..50 {
            let first = next_attempt(&config, 1, &failed_at(at, None)).expect("retry");
            let wait = (first - at).num_milliseconds();
            assert!((8_000..=12_000).contains(&wait), "{wait}");
            let second = next_attempt(&config, 2, &failed_at(at, None)).expect("retry");
            assert!((80_000..=120_000).contains(&(second - at).num_milliseconds()));
        }
        assert_eq!(next_attempt(&config, 3, &failed_at(at, None)), None);
    }

    #[test]
    fn retry_after_is_a_floor_with_a_ceiling() {
        let config = DispatcherConfig {
            retry_schedule: vec![Duration::from_secs(1)],
            max_retry_after: Duration::from_secs(60),
            ..DispatcherConfig::default()
        };
        let at = Utc::now();
        let asked =
            next_attempt(&config, 1, &failed_at(at, Some(Duration::from_secs(30)))).expect("retry");
        assert_eq!((asked - at).num_seconds(), 30);
        let capped = next_attempt(&config, 1, &failed_at(at, Some(Duration::from_secs(86400))))
            .expect("retry");
        assert_eq!((capped - at).num_seconds(), 60);
    }

    #[test]
    fn tally_keeps_trailing_failures() {
        let at = Utc::now();
        let ok = Outcome {
            status_code: Some(200),
            error: None,
            ..Outcome::failed(at, "")
        };
        let mut tally = EndpointTally::default();
        tally.add(&failed_at(at, None));
        tally.add(&ok);
        tally.add(&failed_at(at, None));
        tally.add(&failed_at(at, None));
        assert_eq!((tally.ok, tally.bad, tally.trailing), (1, 3, 2));
        assert_eq!(tally.last_ok, Some(at));
        assert!(tally.first_fail_after_ok.is_some());
    }
}
