//! Executing commands: cqrs-es over postgres-es, with aggregate-conflict retries and
//! read-your-writes.
//!
//! This mirrors `CqrsFramework::execute_with_metadata` (load, handle, commit) but keeps
//! the committed events, because the caller needs their place in the log to wait for
//! the read models, and the aggregate's version for `ETag`s. No cqrs-es `Query` runs
//! here: read models are fed only by the ordered subscriptions.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use pulsar_domain::{DomainError, EventMetadata, Tenanted};
use pulsar_projections::{Position, Subscriptions};

use crate::application::event_store::{Appended, LogRepository};
use sqlx::PgPool;

use crate::application::{Error, Result};
use crate::metrics::Metrics;

/// How many times a command is retried after losing an aggregate conflict.
const CONFLICT_ATTEMPTS: usize = 4;

/// Events between aggregate snapshots, so loading a long-lived aggregate stays cheap.
const SNAPSHOT_EVERY: usize = 50;

fn store<A: Aggregate>(pool: &PgPool, appended: Appended) -> PersistedEventStore<LogRepository, A> {
    PersistedEventStore::new_snapshot_store(
        LogRepository::new(pool.clone(), appended),
        SNAPSHOT_EVERY,
    )
}

/// The outcome of a committed command.
#[derive(Debug)]
pub struct Committed<A: Aggregate> {
    /// The events this command appended (empty when it changed nothing).
    pub events: Vec<EventEnvelope<A>>,
    /// The aggregate's version (its last sequence) after the command.
    pub version: i64,
    /// Where the aggregate's last event sits in the log.
    pub position: Position,
    /// Whether the read models had caught up when the call returned.
    pub consistent: bool,
}

/// Why one attempt did not commit.
enum Attempt {
    Failed(AggregateError<DomainError>),
    /// The aggregate is not at the version the caller expected.
    Stale,
}

/// Runs commands. Cheap to clone.
#[derive(Clone)]
pub struct Commands {
    pool: PgPool,
    subscriptions: Subscriptions,
    consistency_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Commands").finish_non_exhaustive()
    }
}

impl Commands {
    pub fn new(
        pool: PgPool,
        subscriptions: Subscriptions,
        consistency_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            pool,
            subscriptions,
            consistency_timeout,
            metrics,
        }
    }

    /// Executes `command` on aggregate `A` with id `id`, retrying aggregate conflicts,
    /// then waits until the read models named in `read_models` have applied it.
    pub async fn execute<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        read_models: &[&str],
    ) -> Result<Committed<A>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Tenanted,
        A::Command: Clone,
    {
        self.execute_expecting(id, command, metadata, read_models, None)
            .await
    }

    /// As [`Commands::execute`], only if the aggregate is still at `expected_version`
    /// (a client's `If-Match`); otherwise 412 and nothing is written.
    pub async fn execute_expecting<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        read_models: &[&str],
        expected_version: Option<i64>,
    ) -> Result<Committed<A>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Tenanted,
        A::Command: Clone,
    {
        self.run(id, command, metadata, read_models, expected_version, false)
            .await
    }

    /// Executes the command that creates aggregate `id`, an id this process just
    /// generated (a UUIDv7): there is nothing to load, so the store is not asked. Should
    /// the id exist after all, the append conflicts and nothing is written.
    pub async fn create<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        read_models: &[&str],
    ) -> Result<Committed<A>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Tenanted,
        A::Command: Clone,
    {
        self.run(id, command, metadata, read_models, None, true)
            .await
    }

    #[tracing::instrument(skip_all, fields(aggregate = A::TYPE, id = %id))]
    async fn run<A>(
        &self,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        read_models: &[&str],
        expected_version: Option<i64>,
        fresh: bool,
    ) -> Result<Committed<A>>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Tenanted,
        A::Command: Clone,
    {
        let appended = Appended::default();
        let store = store::<A>(&self.pool, appended.clone());
        let mut attempt = 1;
        let (events, loaded_version) = loop {
            let outcome = Self::attempt(
                &store,
                id,
                command.clone(),
                metadata,
                expected_version,
                fresh,
            )
            .await;
            match outcome {
                Err(Attempt::Failed(AggregateError::AggregateConflict))
                    if attempt < CONFLICT_ATTEMPTS && !fresh =>
                {
                    self.metrics
                        .command_conflicts_total
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(attempt, "aggregate conflict; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(2 * attempt as u64)).await;
                }
                Err(Attempt::Stale) => return Err(Error::PreconditionFailed),
                Err(Attempt::Failed(error)) => return Err(error.into()),
                Ok(outcome) => break outcome,
            }
        };
        self.metrics.commands_total.fetch_add(1, Ordering::Relaxed);
        if !events.is_empty() {
            self.subscriptions.appended_of(A::TYPE);
        }
        // Where the append put the last event: returned by the append itself.
        let position = appended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or(Position::ZERO);
        let version = events.last().map_or(loaded_version, |e| e.sequence as i64);
        let consistent = if events.is_empty() {
            true
        } else {
            self.wait_for(read_models, position).await
        };
        Ok(Committed {
            events,
            version,
            position,
            consistent,
        })
    }

    /// One try: load, judge, append. Returns the committed events and the version the
    /// aggregate was loaded at.
    async fn attempt<A>(
        store: &PersistedEventStore<LogRepository, A>,
        id: &str,
        command: A::Command,
        metadata: &EventMetadata,
        expected_version: Option<i64>,
        fresh: bool,
    ) -> Result<(Vec<EventEnvelope<A>>, i64), Attempt>
    where
        A: Aggregate<Error = DomainError, Services = ()> + Tenanted,
    {
        let mut context = if fresh {
            EventStoreAggregateContext {
                aggregate_id: id.to_string(),
                aggregate: A::default(),
                current_sequence: 0,
                current_snapshot: None,
            }
        } else {
            store.load_aggregate(id).await.map_err(Attempt::Failed)?
        };
        let stale = expected_version.is_some_and(|v| v != context.current_sequence as i64);
        let sink = EventSink::default();
        // The command is judged first, so that an aggregate that refuses the caller
        // (another workspace's, say) answers the same whatever version was named: a
        // stale version must not reveal that it exists.
        context
            .aggregate()
            .handle(command, &(), &sink)
            .await
            .map_err(|e| Attempt::Failed(AggregateError::UserError(e)))?;
        if stale {
            return Err(Attempt::Stale);
        }
        let loaded = context.current_sequence as i64;
        let events = sink.collect().await;
        if events.is_empty() {
            return Ok((Vec::new(), loaded));
        }
        // The workspace comes from the aggregate itself (after the command), never from
        // the caller.
        let metadata = EventMetadata {
            workspace_id: context.aggregate().tenant(id),
            ..metadata.clone()
        };
        store
            .commit(events, context, metadata.to_map())
            .await
            .map(|events| (events, loaded))
            .map_err(Attempt::Failed)
    }

    /// Waits (bounded) until the named read models have passed `position`.
    pub async fn wait_for(&self, read_models: &[&str], position: Position) -> bool {
        let caught_up = self
            .subscriptions
            .wait_for(read_models, position, self.consistency_timeout)
            .await;
        if !caught_up {
            self.metrics
                .consistency_timeouts_total
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                %position,
                ?read_models,
                "read models did not catch up in time; answering anyway"
            );
        }
        caught_up
    }
}

/// Reads an aggregate's current state straight from the event store (for checks that
/// must not trust an eventually consistent read model).
pub async fn load<A>(pool: &PgPool, id: &str) -> Result<A>
where
    A: Aggregate<Error = DomainError, Services = ()>,
{
    let mut context = store::<A>(pool, Appended::default())
        .load_aggregate(id)
        .await
        .map_err(Error::from)?;
    Ok(std::mem::take(context.aggregate()))
}
