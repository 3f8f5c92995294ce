//! What every handler shares.

use std::sync::Arc;

use pulsar_projections::key_table::KeyTable;
use pulsar_projections::list::CountCache;
use pulsar_projections::Subscriptions;
use sqlx::PgPool;

use crate::application::commands::Commands;
use crate::application::rate_limit::RateLimiter;
use crate::application::usage::KeyUsage;
use crate::clock::Clock;
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
    /// Every key, kept current from the log: verification needs no database.
    pub key_table: Arc<KeyTable>,
    pub rate_limiter: Arc<RateLimiter>,
    pub usage: Arc<KeyUsage>,
    pub clock: Arc<Clock>,
    /// List totals, reused while their read model has not moved.
    pub counts: Arc<CountCache>,
}

impl AppState {
    pub fn new(
        config: Config,
        pool: PgPool,
        subscriptions: Subscriptions,
        key_table: Arc<KeyTable>,
    ) -> Self {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let commands = Commands::new(
            pool.clone(),
            subscriptions.clone(),
            config.consistency_timeout,
            metrics.clone(),
        );
        Self {
            rate_limiter: Arc::new(RateLimiter::new(config.rate_limit_scale)),
            config,
            pool,
            subscriptions,
            commands,
            metrics,
            key_table,
            usage: Arc::default(),
            clock: Arc::default(),
            counts: Arc::default(),
        }
    }
}
