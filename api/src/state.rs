//! What every handler shares.

use std::sync::Arc;

use pulsar_projections::Subscriptions;
use sqlx::PgPool;

use crate::commands::Commands;
use crate::config::Config;
use crate::metrics::Metrics;

/// Cheap to clone: everything is behind `Arc`s or is a pool handle.
#[derive(Clone, Debug)]
pub struct AppState {
    pub config: Arc<Config>,
    pub pool: PgPool,
    pub subscriptions: Subscriptions,
    pub commands: Commands,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(config: Config, pool: PgPool, subscriptions: Subscriptions) -> Self {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let commands = Commands::new(
            pool.clone(),
            subscriptions.clone(),
            config.consistency_timeout,
            metrics.clone(),
        );
        Self {
            config,
            pool,
            subscriptions,
            commands,
            metrics,
        }
    }
}
