//! Durable, ordered subscriptions to the event log.
//!
//! A subscription applies the log to one read model in batches. Each batch is one
//! transaction: take the subscriber's lock, read the checkpoint, read the next events
//! past the horizon ([`crate::log::read_after`]), apply them, advance the checkpoint,
//! notify, commit. A crash anywhere rolls the whole batch back, so nothing is lost and
//! nothing is applied twice.
//!
//! One active consumer per subscriber, across processes: the batch takes a
//! transaction-scoped advisory lock (`pg_try_advisory_xact_lock`). A process that does
//! not get it follows the checkpoint instead (standby), which keeps its read-your-writes
//! waits working. An advisory lock rather than `SELECT … FOR UPDATE` on the checkpoint
//! row, because a row lock assigns the batch a transaction id *before* the horizon query
//! runs, and the batch would then hold back its own horizon.
//!
//! Wake-ups come from `LISTEN events_appended` and `LISTEN subscription_progress`, with a
//! timed poll as fallback, since notifications are lost while a listener reconnects.
//! The notifications are sent after commit by a coalescing notifier task, never inside
//! the appending or batch transaction: PostgreSQL holds a database-wide lock from a
//! transaction's first NOTIFY until its commit is flushed, which would serialise every
//! append behind one WAL flush.
//! Errors are never swallowed: the batch rolls back and is retried with exponential
//! backoff; a subscriber that keeps failing reports itself stuck in its status (read by
//! `/readyz` and `/metrics`) instead of skipping the event.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::log::{self, StoredEvent};
use crate::position::Position;

/// Channel the events table's trigger notifies on every append.
pub const EVENTS_CHANNEL: &str = "events_appended";
/// Channel a batch notifies on when it advances a checkpoint (payload: subscriber name).
pub const PROGRESS_CHANNEL: &str = "subscription_progress";

/// A read model fed by the event log.
pub trait Projection: Send + Sync + 'static {
    /// The subscriber's name: its checkpoint row and what handlers wait on.
    fn name(&self) -> &'static str;

    /// The aggregate types whose events it reads; empty reads them all. Its checkpoint
    /// then moves only on those events, so writers wait on it only for its own streams.
    fn aggregate_types(&self) -> &'static [&'static str] {
        &[]
    }

    /// The tables it keeps, for rebuilds ([`crate::rebuild`]); none by default (not
    /// rebuildable).
    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables::default()
    }

    /// Applies one event inside the batch's transaction. Events the read model does not
    /// care about are ignored; an error rolls back the whole batch. It reads nothing but
    /// the event and the projection's own tables, so a rebuild gives the same rows.
    fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Applies a batch, in log order, inside the batch's transaction. By default one
    /// event at a time; read models that can fold runs of events into fewer statements
    /// override it.
    fn apply_batch(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async move {
            for event in events {
                self.apply(&mut *conn, event).await.map_err(|error| {
                    tracing::error!(
                        %error,
                        position = %event.position,
                        event_type = %event.event_type,
                        aggregate_id = %event.aggregate_id,
                        "projection failed on event"
                    );
                    error
                })?;
            }
            Ok(())
        }
    }
}

/// An in-memory view every process keeps for itself (no lock, no stored checkpoint):
/// it reads one aggregate type's events from the start of the log at boot and then
/// tails it. Used where a database round trip per request is too much (the key table).
pub trait LocalProjection: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// The aggregate types it reads.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// Applies a batch in log order. It may read the database (e.g. secret hashes); an
    /// error retries the same batch.
    fn apply(
        &self,
        pool: &PgPool,
        events: &[StoredEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("cannot decode event: {0}")]
    Decode(String),
}

/// Tunables of every subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    /// Events per batch transaction.
    pub batch_size: i64,
    /// Poll even without a notification this often.
    pub poll_interval: Duration,
    /// Upper bound of the retry backoff.
    pub max_backoff: Duration,
    /// Consecutive failures after which the subscriber reports itself stuck.
    pub stuck_after: u32,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            stuck_after: 3,
        }
    }
}

/// What a subscriber is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriberState {
    Starting,
    /// Holds the lock and applies events.
    Active,
    /// Another process holds the lock; this one follows the checkpoint.
    Standby,
    /// The last batch failed; it is being retried with backoff.
    Failing,
}

/// A subscriber's health, for `/readyz`, `/metrics` and tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionStatus {
    pub name: &'static str,
    /// The aggregate types it reads (empty: every type). Its checkpoint moves only on
    /// their events, so how far behind it is counts only those.
    pub reads: &'static [&'static str],
    pub state: SubscriberState,
    pub transaction_id: u64,
    pub global_position: i64,
    pub events_applied: u64,
    pub consecutive_failures: u32,
    pub failures_total: u64,
    pub stuck: bool,
    /// The last batch came back short: the subscriber had reached the log's head.
    pub caught_up: bool,
    pub last_error: Option<String>,
    pub last_applied_at: Option<DateTime<Utc>>,
}

/// Projection lag (append to applied) histogram, milliseconds.
#[derive(Debug)]
pub struct LagHistogram {
    counts: [AtomicU64; LAG_BUCKETS_MS.len() + 1],
    sum_micros: AtomicU64,
}

/// Upper bounds of the lag buckets, in milliseconds.
pub const LAG_BUCKETS_MS: [f64; 20] = [
    1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 250.0, 500.0,
    1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
];

impl Default for LagHistogram {
    fn default() -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl LagHistogram {
    fn record(&self, lag_ms: f64) {
        let bucket = LAG_BUCKETS_MS
            .iter()
            .position(|upper| lag_ms <= *upper)
            .unwrap_or(LAG_BUCKETS_MS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((lag_ms.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
    }

    /// Cumulative counts per bucket (the last is `+Inf`) and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        (
            cumulative,
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
        )
    }

    /// The upper bound of the bucket holding quantile `q` (e.g. 0.99), in ms.
    pub fn quantile_upper_bound(&self, q: f64) -> Option<f64> {
        let (cumulative, _) = self.snapshot();
        let total = *cumulative.last()?;
        if total == 0 {
            return None;
        }
        let rank = (q * total as f64).ceil() as u64;
        let bucket = cumulative.iter().position(|c| *c >= rank)?;
        Some(LAG_BUCKETS_MS.get(bucket).copied().unwrap_or(f64::INFINITY))
    }
}

struct Entry {
    position: watch::Sender<Position>,
    status: Mutex<SubscriptionStatus>,
    lag: LagHistogram,
    /// Wakes this subscriber alone.
    wake: watch::Sender<u64>,
    /// The aggregate types whose appends wake it (empty: all); `None` for a follower,
    /// which wakes on the followed subscriber's progress instead.
    types: Option<&'static [&'static str]>,
}

impl Entry {
    /// Records the lag of a batch just applied up to `last`.
    fn applied(&self, events: &[StoredEvent], last: Position) -> Batch {
        let now = Utc::now();
        for event in events {
            let lag = (now - event.recorded_at)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            self.lag.record(lag as f64 / 1000.0);
        }
        Batch::Applied {
            count: events.len(),
            position: last,
        }
    }

    fn update(&self, f: impl FnOnce(&mut SubscriptionStatus)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut status);
    }
}

/// Appends announced locally and not yet sent to other processes.
#[derive(Default)]
struct PendingAppends {
    /// Some append of an unnamed type: wake every subscriber.
    all: bool,
    types: std::collections::BTreeSet<&'static str>,
}

struct Inner {
    pool: PgPool,
    /// Names this process in its notifications, so that it ignores its own: it woke its
    /// subscribers directly already, and a second wake-up is an empty batch.
    process: String,
    pending_append: Mutex<PendingAppends>,
    /// Subscribers whose progress is not yet announced.
    pending_progress: Mutex<std::collections::BTreeSet<&'static str>>,
    notifier: tokio::sync::Notify,
    config: SubscriptionConfig,
    wake: watch::Sender<u64>,
    shutdown: watch::Receiver<bool>,
    entries: RwLock<HashMap<&'static str, Arc<Entry>>>,
}

/// The set of subscriptions of one process, and the way handlers wait on them.
#[derive(Clone)]
pub struct Subscriptions {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Subscriptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriptions").finish_non_exhaustive()
    }
}

/// How a batch ended.
enum Batch {
    Applied { count: usize, position: Position },
    Standby(Position),
}

impl Subscriptions {
    /// `shutdown` turning true stops every loop after its current batch.
    pub fn new(pool: PgPool, config: SubscriptionConfig, shutdown: watch::Receiver<bool>) -> Self {
        let (wake, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                pool,
                process: pulsar_domain::ids::new_id("proc"),
                pending_append: Mutex::default(),
                pending_progress: Mutex::default(),
                notifier: tokio::sync::Notify::new(),
                config,
                wake,
                shutdown,
                entries: RwLock::default(),
            }),
        }
    }

    /// Wakes every subscription now (as a notification would).
    pub fn wake(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Starts the `LISTEN` task that wakes subscriptions on appends and progress, and the
    /// notifier that tells other processes about this one's.
    pub fn spawn_listener(&self) -> JoinHandle<()> {
        let this = self.clone();
        let notifier = self.clone();
        tokio::spawn(async move {
            tokio::join!(this.listen(), notifier.notify_loop());
        })
    }

    /// Announces that this process committed events of unnamed types: wakes every local
    /// subscriber now and other processes through `events_appended` (coalesced).
    pub fn appended(&self) {
        self.wake();
        self.inner
            .pending_append
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .all = true;
        self.inner.notifier.notify_one();
    }

    /// Announces that this process committed events of `aggregate_type`: wakes only the
    /// subscribers that read that type, here now and elsewhere through the
    /// notification's payload. Idle subscribers are not woken for others' events.
    pub fn appended_of(&self, aggregate_type: &'static str) {
        self.wake_types(|t| t == aggregate_type);
        self.inner
            .pending_append
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .types
            .insert(aggregate_type);
        self.inner.notifier.notify_one();
    }

    /// Wakes the subscribers reading any type `appended` accepts.
    fn wake_types(&self, appended: impl Fn(&str) -> bool) {
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        for entry in entries.values() {
            if let Some(types) = entry.types {
                if types.is_empty() || types.iter().any(|t| appended(t)) {
                    entry.wake.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        }
    }

    /// Wakes subscriber `name` alone (another process reported its progress).
    fn wake_name(&self, name: &str) {
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get(name) {
            entry.wake.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn progressed(&self, name: &'static str) {
        self.inner
            .pending_progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name);
        self.inner.notifier.notify_one();
    }

    /// Sends pending notifications, one round trip for however many pokes came in.
    async fn notify_loop(&self) {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = self.inner.notifier.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let append = std::mem::take(
                &mut *self
                    .inner
                    .pending_append
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            let progress: Vec<&'static str> = std::mem::take(
                &mut *self
                    .inner
                    .pending_progress
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            )
            .into_iter()
            .collect();
            // The append payload names the aggregate types ("" for all), so other
            // processes wake only the subscribers that read them.
            // Every payload starts with this process's name: `<process>|<body>`.
            let process = &self.inner.process;
            let types = append.types.iter().copied().collect::<Vec<_>>().join(",");
            let mut channels: Vec<(&str, String)> = progress
                .iter()
                .map(|name| (PROGRESS_CHANNEL, format!("{process}|{name}")))
                .collect();
            if append.all {
                channels.push((EVENTS_CHANNEL, format!("{process}|")));
            } else if !types.is_empty() {
                channels.push((EVENTS_CHANNEL, format!("{process}|{types}")));
            }
            if channels.is_empty() {
                continue;
            }
            let (names, payloads): (Vec<&str>, Vec<String>) = channels.into_iter().unzip();
            let sent = sqlx::query(
                "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS n(c, p)",
            )
            .bind(&names)
            .bind(&payloads)
            .execute(&self.inner.pool)
            .await;
            if let Err(error) = sent {
                // Other processes fall back to polling; nothing is lost.
                tracing::warn!(%error, "could not send notifications");
            }
        }
    }

    async fn listen(self) {
        let mut shutdown = self.inner.shutdown.clone();
        loop {
            let result = async {
                let mut listener = PgListener::connect_with(&self.inner.pool).await?;
                listener
                    .listen_all([EVENTS_CHANNEL, PROGRESS_CHANNEL])
                    .await?;
                // Anything appended while we were not listening: look now.
                self.wake();
                loop {
                    let notification = listener.recv().await?;
                    let (sender, payload) = notification
                        .payload()
                        .split_once('|')
                        .unwrap_or(("", notification.payload()));
                    if sender == self.inner.process {
                        continue;
                    }
                    match notification.channel() {
                        PROGRESS_CHANNEL => self.wake_name(payload),
                        EVENTS_CHANNEL if !payload.is_empty() => {
                            let types: Vec<&str> = payload.split(',').collect();
                            self.wake_types(|t| types.contains(&t));
                        }
                        _ => self.wake(),
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                result = result => {
                    if let Err(error) = result {
                        tracing::warn!(%error, "event listener lost its connection; polling until it is back");
                    }
                }
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Runs `projection` as an active subscriber (it applies events when it holds the lock).
    pub fn spawn<P: Projection>(&self, projection: P) -> JoinHandle<()> {
        let types = projection.aggregate_types();
        self.start::<P, NoLocal>(
            projection.name(),
            Some(types),
            types,
            Source::Durable(Arc::new(projection)),
        )
    }

    /// Follows the checkpoint of `projection`, which another process runs, so that
    /// read-your-writes waits work on API-only nodes.
    pub fn follow<P: Projection>(&self, projection: &P) -> JoinHandle<()> {
        self.start::<NoProjection, NoLocal>(
            projection.name(),
            None,
            projection.aggregate_types(),
            Source::Follow,
        )
    }

    /// Runs an in-memory projection of this process.
    pub fn spawn_local<L: LocalProjection>(&self, projection: L) -> JoinHandle<()> {
        self.start::<NoProjection, L>(
            projection.name(),
            Some(projection.aggregate_types()),
            projection.aggregate_types(),
            Source::Local(Arc::new(projection), Mutex::new(Position::ZERO)),
        )
    }

    fn start<P: Projection, L: LocalProjection>(
        &self,
        name: &'static str,
        types: Option<&'static [&'static str]>,
        reads: &'static [&'static str],
        source: Source<P, L>,
    ) -> JoinHandle<()> {
        let entry = Arc::new(Entry {
            position: watch::channel(Position::ZERO).0,
            status: Mutex::new(SubscriptionStatus {
                name,
                reads,
                state: SubscriberState::Starting,
                transaction_id: 0,
                global_position: 0,
                events_applied: 0,
                consecutive_failures: 0,
                failures_total: 0,
                stuck: false,
                caught_up: false,
                last_error: None,
                last_applied_at: None,
            }),
            lag: LagHistogram::default(),
            wake: watch::channel(0).0,
            types,
        });
        self.inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, entry.clone());
        let this = self.clone();
        tokio::spawn(async move { this.run(name, source, entry).await })
    }

    #[tracing::instrument(name = "subscription", skip_all, fields(subscriber = name))]
    async fn run<P: Projection, L: LocalProjection>(
        self,
        name: &'static str,
        source: Source<P, L>,
        entry: Arc<Entry>,
    ) {
        let config = &self.inner.config;
        let mut wake = self.inner.wake.subscribe();
        let mut own_wake = entry.wake.subscribe();
        let mut shutdown = self.inner.shutdown.clone();
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            wake.mark_unchanged();
            own_wake.mark_unchanged();
            let started = Instant::now();
            let batch = match &source {
                Source::Durable(projection) => {
                    self.batch(name, Some(projection.as_ref()), &entry).await
                }
                Source::Follow => self.batch::<P>(name, None, &entry).await,
                Source::Local(projection, position) => {
                    self.local_batch(projection.as_ref(), position, &entry)
                        .await
                }
            };
            match batch {
                Ok(batch) => {
                    backoff = Duration::from_millis(100);
                    let (state, position, count) = match batch {
                        Batch::Applied { count, position } => {
                            (SubscriberState::Active, position, count)
                        }
                        Batch::Standby(position) => (SubscriberState::Standby, position, 0),
                    };
                    entry.update(|s| {
                        s.state = state;
                        s.transaction_id = position.transaction_id;
                        s.global_position = position.global_position;
                        s.events_applied += count as u64;
                        s.consecutive_failures = 0;
                        s.stuck = false;
                        s.caught_up = (count as i64) < config.batch_size;
                        if count > 0 {
                            s.last_applied_at = Some(Utc::now());
                        }
                    });
                    entry.position.send_if_modified(|p| {
                        let advanced = position > *p;
                        if advanced {
                            *p = position;
                        }
                        advanced
                    });
                    if count > 0 {
                        tracing::trace!(count, %position, elapsed = ?started.elapsed(), "batch applied");
                    }
                    if count as i64 >= config.batch_size {
                        continue;
                    }
                    tokio::select! {
                        _ = wake.changed() => {}
                        _ = own_wake.changed() => {}
                        _ = tokio::time::sleep(config.poll_interval) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    let mut stuck = false;
                    entry.update(|s| {
                        s.state = SubscriberState::Failing;
                        s.consecutive_failures += 1;
                        s.failures_total += 1;
                        s.stuck = s.consecutive_failures >= config.stuck_after;
                        s.last_error = Some(error.to_string());
                        stuck = s.stuck;
                    });
                    if stuck {
                        tracing::error!(%error, retry_in = ?backoff, "subscriber is stuck; retrying");
                    } else {
                        tracing::warn!(%error, retry_in = ?backoff, "batch failed and was rolled back; retrying");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(config.max_backoff);
                }
            }
        }
    }

    async fn batch<P: Projection>(
        &self,
        name: &'static str,
        projection: Option<&P>,
        entry: &Entry,
    ) -> Result<Batch, ProjectionError> {
        let mut tx = self.inner.pool.begin().await?;
        // Lock and checkpoint in one round trip: an idle subscriber's batch is BEGIN,
        // this, the read, and ROLLBACK.
        const CHECKPOINT: &str = "SELECT CASE WHEN $2
                    THEN pg_try_advisory_xact_lock(hashtextextended('pulsar.subscription.' || $1, 0))
                    ELSE false END AS locked,
                    last_transaction_id::text AS tx, last_global_position AS pos
               FROM subscription_checkpoints WHERE name = $1";
        let mut row = sqlx::query(CHECKPOINT)
            .bind(name)
            .bind(projection.is_some())
            .fetch_optional(&mut *tx)
            .await?;
        if row.is_none() {
            // First run of this subscriber anywhere: create its checkpoint.
            sqlx::query(
                "INSERT INTO subscription_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .execute(&mut *tx)
            .await?;
            row = sqlx::query(CHECKPOINT)
                .bind(name)
                .bind(projection.is_some())
                .fetch_optional(&mut *tx)
                .await?;
        }
        let row =
            row.ok_or_else(|| ProjectionError::Decode(format!("no checkpoint row for `{name}`")))?;
        let locked: bool = row.try_get("locked")?;
        let checkpoint = Position::from_db(row.try_get("tx")?, row.try_get("pos")?)
            .map_err(ProjectionError::Decode)?;
        let Some(projection) = projection.filter(|_| locked) else {
            tx.rollback().await?;
            return Ok(Batch::Standby(checkpoint));
        };
        let events = log::read_after_of_types(
            &mut tx,
            checkpoint,
            projection.aggregate_types(),
            self.inner.config.batch_size,
        )
        .await?;
        let Some(last) = events.last().map(|e| e.position) else {
            tx.rollback().await?;
            return Ok(Batch::Applied {
                count: 0,
                position: checkpoint,
            });
        };
        projection
            .apply_batch(&mut tx, &events)
            .await
            .map_err(|error| {
                tracing::error!(
                    %error,
                    from = %events[0].position,
                    events = events.len(),
                    "projection failed on a batch; it will be retried whole"
                );
                error
            })?;
        // The read model and its checkpoint commit together, so a batch lost to a crash
        // before its WAL is flushed is simply applied again: no need to wait for the flush.
        // (`SET LOCAL synchronous_commit = off` in the same statement, one round trip.)
        sqlx::query(
            "WITH settings AS (SELECT set_config('synchronous_commit', 'off', true))
             UPDATE subscription_checkpoints
                SET last_transaction_id = $2::text::xid8, last_global_position = $3, updated_at = now()
               FROM settings
              WHERE name = $1",
        )
        .bind(name)
        .bind(last.transaction_text())
        .bind(last.global_position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.progressed(name);
        Ok(entry.applied(&events, last))
    }

    async fn local_batch<L: LocalProjection>(
        &self,
        projection: &L,
        position: &Mutex<Position>,
        entry: &Entry,
    ) -> Result<Batch, ProjectionError> {
        let after = *position.lock().unwrap_or_else(|e| e.into_inner());
        let mut conn = self.inner.pool.acquire().await?;
        let events = log::read_after_of_types(
            &mut conn,
            after,
            projection.aggregate_types(),
            self.inner.config.batch_size,
        )
        .await?;
        drop(conn);
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Batch::Applied {
                count: 0,
                position: after,
            });
        };
        projection.apply(&self.inner.pool, &events).await?;
        *position.lock().unwrap_or_else(|e| e.into_inner()) = last;
        Ok(entry.applied(&events, last))
    }

    /// Waits until every named subscriber has applied the log up to `position`, or the
    /// timeout passes. Returns whether they all got there. Woken by the subscribers, not
    /// by sleeping.
    pub async fn wait_for(&self, names: &[&str], position: Position, timeout: Duration) -> bool {
        let receivers: Vec<watch::Receiver<Position>> = {
            let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
            names
                .iter()
                .filter_map(|n| entries.get(n).map(|e| e.position.subscribe()))
                .collect()
        };
        if receivers.len() != names.len() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for mut rx in receivers {
            let reached = tokio::time::timeout_at(deadline, rx.wait_for(|p| *p >= position)).await;
            if !matches!(reached, Ok(Ok(_))) {
                return false;
            }
        }
        true
    }

    /// Waits until the named subscriber has once read up to the log's head (e.g. the key
    /// table after start, before the process serves requests).
    pub async fn wait_caught_up(&self, name: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self
                .statuses()
                .iter()
                .any(|s| s.name == name && s.caught_up)
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Every subscriber's status, sorted by name.
    pub fn statuses(&self) -> Vec<SubscriptionStatus> {
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        let mut statuses: Vec<_> = entries
            .values()
            .map(|e| e.status.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        statuses.sort_by_key(|s| s.name);
        statuses
    }

    /// Where subscriber `name`'s checkpoint stands, as this process last saw it. A read
    /// model changes only when its checkpoint moves.
    pub fn position(&self, name: &str) -> Option<Position> {
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(name).map(|e| *e.position.borrow())
    }

    /// A watch of subscriber `name`'s checkpoint (as this process sees it), for work
    /// that follows a subscriber (the webhook workers follow the fan-out).
    pub fn progress(&self, name: &str) -> Option<watch::Receiver<Position>> {
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(name).map(|e| e.position.subscribe())
    }

    /// Runs `f` with a subscriber's lag histogram.
    pub fn with_lag<R>(&self, name: &str, f: impl FnOnce(&LagHistogram) -> R) -> Option<R> {
        let entries = self.inner.entries.read().unwrap_or_else(|e| e.into_inner());
        entries.get(name).map(|e| f(&e.lag))
    }
}

/// Where a subscription's events go.
enum Source<P, L> {
    /// A read model in PostgreSQL, with a stored checkpoint and a lock.
    Durable(Arc<P>),
    /// Another process's durable subscriber, followed through its checkpoint.
    Follow,
    /// An in-memory view of this process, with its position in memory.
    Local(Arc<L>, Mutex<Position>),
}

/// Stand-in type where a runner has no local projection.
struct NoLocal;

impl LocalProjection for NoLocal {
    fn name(&self) -> &'static str {
        "none"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[]
    }

    async fn apply(&self, _: &PgPool, _: &[StoredEvent]) -> Result<(), ProjectionError> {
        Ok(())
    }
}

/// Stand-in type for followers, which never apply anything.
struct NoProjection;

impl Projection for NoProjection {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn apply(&self, _: &mut PgConnection, _: &StoredEvent) -> Result<(), ProjectionError> {
        Ok(())
    }
}
