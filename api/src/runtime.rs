//! Starting and stopping the parts of a Pulsar process around one database pool.

use pulsar_projections::identity::{self, IdentityProjection};
use pulsar_projections::subscription::SubscriptionConfig;
use pulsar_projections::Subscriptions;
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::state::AppState;

/// Which parts this process runs (`pulsar serve --role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API and projections (the default).
    All,
    /// API only; follows the projections other processes run.
    Api,
    /// Projections only (the API still answers health and metrics).
    Projector,
}

impl Role {
    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "all" => Some(Self::All),
            "api" => Some(Self::Api),
            "projector" => Some(Self::Projector),
            _ => None,
        }
    }

    fn projects(self) -> bool {
        matches!(self, Self::All | Self::Projector)
    }
}

/// The running background parts and the state handlers share.
#[derive(Debug)]
pub struct Runtime {
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Runtime {
    /// Migrates the database and starts the subscriptions.
    pub async fn start(
        config: Config,
        pool: PgPool,
        role: Role,
    ) -> Result<Self, sqlx::migrate::MigrateError> {
        Self::start_with(config, pool, role, SubscriptionConfig::default()).await
    }

    /// As [`Runtime::start`], with explicit subscription tunables (tests shorten them).
    pub async fn start_with(
        config: Config,
        pool: PgPool,
        role: Role,
        subscription_config: SubscriptionConfig,
    ) -> Result<Self, sqlx::migrate::MigrateError> {
        crate::db::migrate(&pool).await?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let subscriptions = Subscriptions::new(pool.clone(), subscription_config, shutdown_rx);
        let mut tasks = vec![subscriptions.spawn_listener()];
        if role.projects() {
            tasks.push(subscriptions.spawn(IdentityProjection));
        } else {
            tasks.push(subscriptions.follow(identity::NAME));
        }
        let state = AppState::new(config, pool, subscriptions);
        Ok(Self {
            state,
            shutdown,
            tasks,
        })
    }

    /// Stops the subscriptions after their current batch and waits for them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
