//! What every handler shares.

use std::sync::Arc;

use pulsar_dispatcher::secrets::SecretBox;
use pulsar_dispatcher::Dispatcher;
use pulsar_projections::key_table::KeyTable;
use pulsar_projections::list::CountCache;
use pulsar_projections::Subscriptions;
use sqlx::PgPool;

use crate::application::commands::Commands;
use crate::application::limits::LimitLocks;
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
    /// Turns for creations that count toward a tier limit.
    pub limits: Arc<LimitLocks>,
    /// Threshold alerts this process knows were recorded.
    pub alerted: Arc<crate::application::alerts::Alerted>,
    /// Webhook sending, secret sealing and the SSRF guard (its claim loop runs only in
    /// processes with the dispatcher role).
    pub dispatcher: Dispatcher,
}

/// Why the shared state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("webhook secret key: {0}")]
    SecretKey(#[from] pulsar_dispatcher::secrets::KeyError),
    #[error("webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl AppState {
    pub fn new(
        config: Config,
        pool: PgPool,
        subscriptions: Subscriptions,
        key_table: Arc<KeyTable>,
    ) -> Result<Self, StateError> {
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let commands = Commands::new(
            pool.clone(),
            subscriptions.clone(),
            config.consistency_timeout,
            metrics.clone(),
        );
        let secrets = SecretBox::from_config(config.secret_key.as_deref(), &config.data_dir)?;
        let control = Arc::new(crate::application::webhooks::Control {
            commands: commands.clone(),
        });
        let dispatcher = Dispatcher::new(pool.clone(), config.webhooks.clone(), secrets, control)?;
        Ok(Self {
            dispatcher,
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
            limits: Arc::default(),
            alerted: Arc::default(),
        })
    }
}
