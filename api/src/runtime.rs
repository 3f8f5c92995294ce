//! Starting and stopping the parts of a Pulsar process around one database pool.

use std::time::Duration;

use pulsar_domain::api_key::{ApiKey, ApiKeyCommand};
use pulsar_domain::ids::{self, prefix};
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::api_keys::{self, ApiKeysProjection};
use pulsar_projections::audit::AuditLog;
use pulsar_projections::identity::{self, IdentityProjection};
use pulsar_projections::key_table::{self, KeyTable};
use pulsar_projections::rebuild;
use pulsar_projections::seo::SeoProjection;
use pulsar_projections::subscription::SubscriptionConfig;
use pulsar_projections::usage::UsageProjection;
use pulsar_projections::webhooks::{self, WebhooksProjection};
use pulsar_projections::workspace_data as data;
use pulsar_projections::Subscriptions;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::application::AppState;
use crate::config::Config;

/// Which parts this process runs (`pulsar serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API and projections (the default).
    All,
    /// API only; follows the projections other processes run.
    Api,
    /// Projections and upkeep only (the API still answers health and metrics).
    Projector,
    /// The webhook dispatcher only: fan-out and delivery workers (the API still answers
    /// health and metrics).
    Dispatcher,
}

impl Role {
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "all" => Some(Self::All),
            "api" => Some(Self::Api),
            "projector" => Some(Self::Projector),
            "dispatcher" => Some(Self::Dispatcher),
            _ => None,
        }
    }

    fn projects(self) -> bool {
        matches!(self, Self::All | Self::Projector)
    }

    fn dispatches(self) -> bool {
        matches!(self, Self::All | Self::Dispatcher)
    }
}

/// The durable read models, by subscriber name.
pub const READ_MODELS: [&str; 11] = [
    identity::NAME,
    api_keys::NAME,
    data::projects::NAME,
    data::tasks::NAME,
    data::contacts::NAME,
    data::companies::NAME,
    data::deals::NAME,
    data::documents::NAME,
    webhooks::NAME,
    pulsar_projections::usage::NAME,
    pulsar_projections::seo::NAME,
];

/// Rebuilds the named read model (`all`: every one, in turn) from the log, calling
/// `on_progress` as it goes; see [`pulsar_projections::rebuild`].
pub async fn rebuild(
    pool: &PgPool,
    name: &str,
    mut on_progress: impl FnMut(&rebuild::Progress),
) -> Result<Vec<rebuild::Report>, RebuildError> {
    let names: Vec<&str> = if name == "all" {
        READ_MODELS.to_vec()
    } else if READ_MODELS.contains(&name) {
        vec![name]
    } else {
        return Err(RebuildError::Unknown(name.to_string()));
    };
    let mut reports = Vec::new();
    for name in names {
        let progress = &mut on_progress;
        let report = match name {
            identity::NAME => rebuild::rebuild(pool, &IdentityProjection, progress).await,
            api_keys::NAME => rebuild::rebuild(pool, &ApiKeysProjection, progress).await,
            data::projects::NAME => {
                rebuild::rebuild(pool, &data::projects::Projection::default(), progress).await
            }
            data::tasks::NAME => {
                rebuild::rebuild(pool, &data::tasks::Projection::default(), progress).await
            }
            data::contacts::NAME => {
                rebuild::rebuild(pool, &data::contacts::Projection::default(), progress).await
            }
            data::companies::NAME => {
                rebuild::rebuild(pool, &data::companies::Projection::default(), progress).await
            }
            data::deals::NAME => {
                rebuild::rebuild(pool, &data::deals::Projection::default(), progress).await
            }
            data::documents::NAME => {
                rebuild::rebuild(pool, &data::documents::Projection::default(), progress).await
            }
            webhooks::NAME => rebuild::rebuild(pool, &WebhooksProjection, progress).await,
            pulsar_projections::usage::NAME => {
                rebuild::rebuild(pool, &UsageProjection, progress).await
            }
            pulsar_projections::seo::NAME => rebuild::rebuild(pool, &SeoProjection, progress).await,
            other => return Err(RebuildError::Unknown(other.to_string())),
        }?;
        reports.push(report);
    }
    Ok(reports)
}

/// Why a rebuild did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("no read model is called `{0}`; read models: all, {names}", names = READ_MODELS.join(", "))]
    Unknown(String),
    #[error("{0}")]
    Projection(#[from] pulsar_projections::ProjectionError),
}

/// The running background parts and the state handlers share.
#[derive(Debug)]
pub struct Runtime {
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Why a runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the key table did not load within {0:?}")]
    KeyTable(Duration),
    #[error("{0}")]
    State(#[from] crate::application::state::StateError),
    #[error("{0}")]
    Signer(#[from] crate::application::audit::SignerError),
}

/// Runs `projection` in this process, or follows its checkpoint where another process
/// runs it.
fn run_or_follow<P: pulsar_projections::Projection>(
    subscriptions: &Subscriptions,
    here: bool,
    projection: P,
) -> JoinHandle<()> {
    if here {
        subscriptions.spawn(projection)
    } else {
        subscriptions.follow(&projection)
    }
}

impl Runtime {
    /// Migrates the database, starts the subscriptions and upkeep, and returns once the
    /// key table is loaded (so no valid key is refused right after a start).
    pub async fn start(config: Config, pool: PgPool, role: Role) -> Result<Self, StartError> {
        Self::start_with(config, pool, role, SubscriptionConfig::default()).await
    }

    /// As [`Runtime::start`], with explicit subscription tunables (tests shorten them).
    pub async fn start_with(
        config: Config,
        pool: PgPool,
        role: Role,
        subscription_config: SubscriptionConfig,
    ) -> Result<Self, StartError> {
        crate::db::migrate(&pool).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let subscriptions =
            Subscriptions::new(pool.clone(), subscription_config, shutdown_rx.clone());
        let key_table = KeyTable::new();
        let mut tasks = vec![
            subscriptions.spawn_listener(),
            subscriptions.spawn_local(key_table.clone()),
        ];
        // Each durable projection runs here, or (API-only nodes) is followed.
        let (s, here) = (&subscriptions, role.projects());
        tasks.extend([
            run_or_follow(s, here, IdentityProjection),
            run_or_follow(s, here, ApiKeysProjection),
            run_or_follow(s, here, data::projects::Projection::default()),
            run_or_follow(s, here, data::tasks::Projection::default()),
            run_or_follow(s, here, data::contacts::Projection::default()),
            run_or_follow(s, here, data::companies::Projection::default()),
            run_or_follow(s, here, data::deals::Projection::default()),
            run_or_follow(s, here, data::documents::Projection::default()),
            run_or_follow(s, here, WebhooksProjection),
            run_or_follow(s, here, UsageProjection),
            run_or_follow(s, here, SeoProjection),
            run_or_follow(s, here, AuditLog),
        ]);
        let interval = config.maintenance_interval;
        let signer = if role.projects() {
            Some(crate::application::audit::Signer::from_config(&config)?)
        } else {
            None
        };
        let state = AppState::new(config, pool, subscriptions.clone(), key_table)?;
        if role.dispatches() {
            tasks.push(subscriptions.spawn(pulsar_dispatcher::fanout::FanOut));
            let progress = subscriptions.progress(pulsar_dispatcher::fanout::NAME);
            tasks.push(tokio::spawn(
                state.dispatcher.clone().run(progress, shutdown_rx.clone()),
            ));
        }
        tasks.push(tokio::spawn(flush_usage(
            state.clone(),
            interval,
            shutdown_rx.clone(),
        )));
        if let Some(signer) = signer {
            tasks.push(tokio::spawn(sign_checkpoints(
                state.clone(),
                signer,
                shutdown_rx.clone(),
            )));
        }
        if role.projects() {
            tasks.push(tokio::spawn(expire_rotated_keys(
                state.clone(),
                interval,
                shutdown_rx,
            )));
        }
        let load = Duration::from_secs(60);
        if !subscriptions.wait_caught_up(key_table::NAME, load).await {
            let _ = shutdown.send(true);
            return Err(StartError::KeyTable(load));
        }
        Ok(Self {
            state,
            shutdown,
            tasks,
        })
    }

    /// Stops the background tasks after their current step and waits for them (usage
    /// counters are flushed one last time).
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Writes the in-memory usage counters (then checks the flushed workspaces' API-call
/// thresholds), purges expired idempotency keys and forgets idle pixel IPs every
/// `interval`, and once more at shutdown.
async fn flush_usage(state: AppState, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        let stop = tokio::select! {
            _ = tokio::time::sleep(interval) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        match state.usage.flush(&state.pool).await {
            Ok(workspaces) => {
                for workspace_id in workspaces {
                    crate::application::alerts::spawn_observe(
                        &state,
                        &workspace_id,
                        pulsar_domain::entitlements::Feature::ApiCalls,
                    );
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not flush key usage; keeping the counts for the next try");
            }
        }
        if let Err(error) = crate::application::pixel::prune(&state).await {
            tracing::warn!(%error, "could not prune the pixel rate window");
        }
        if let Err(error) = crate::http::idempotency::purge_expired(&state.pool).await {
            tracing::warn!(%error, "could not purge expired idempotency keys");
        }
        if stop {
            return;
        }
    }
}

/// Signs a checkpoint of the audit tree every few seconds while the log grows.
async fn sign_checkpoints(
    state: AppState,
    signer: crate::application::audit::Signer,
    mut shutdown: watch::Receiver<bool>,
) {
    let interval = state
        .config
        .maintenance_interval
        .max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Err(error) =
            crate::application::audit::checkpoint_if_grown(&state.pool, &signer).await
        {
            tracing::warn!(%error, "could not sign an audit checkpoint");
        }
    }
}

/// Records the end of rotation grace periods as events. The keys stopped working at
/// the deadline already (the key table checks it on every request); this makes the
/// fact part of the audit trail and the read model.
async fn expire_rotated_keys(
    state: AppState,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let now = state.clock.now();
        let due: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT id FROM api_keys WHERE grace_period_ends_at <= $1
               AND expired_at IS NULL AND revoked_at IS NULL LIMIT 500",
        )
        .bind(now)
        .fetch_all(&state.pool)
        .await;
        let due = match due {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "could not look for expired rotations");
                continue;
            }
        };
        for key_id in due {
            let metadata = EventMetadata {
                actor: Actor::system(),
                request_id: ids::new_id(prefix::REQUEST),
                client_ip: String::new(),
                user_agent: "pulsar-maintenance".into(),
                workspace_id: None,
            };
            let command = ApiKeyCommand::ExpireRotatedKey { now };
            if let Err(error) = state
                .commands
                .execute::<ApiKey>(&key_id, command, &metadata, &[])
                .await
            {
                tracing::warn!(%error, key_id, "could not record a rotation's end");
            }
        }
    }
}
