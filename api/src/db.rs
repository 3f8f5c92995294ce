//! Connecting to PostgreSQL and migrating it.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The numbered migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// A pool whose sessions cannot hold the event log's horizon back for long: a write
/// transaction left idle would stall every subscriber (see docs/architecture.md).
pub async fn connect(url: &str, size: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options
        .application_name("pulsar")
        .options([("idle_in_transaction_session_timeout", "10s")]);
    PgPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Applies pending migrations (idempotent; safe with several processes starting at once,
/// sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
