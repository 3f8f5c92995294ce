//! Tier limits that hold under concurrency, on one node or many.
//!
//! A creation that counts toward a limited feature runs its count and its command one at
//! a time per (workspace, feature): an in-process mutex (so a node queues its own
//! requests without holding database connections), then a transaction-scoped advisory
//! lock (so nodes queue behind each other). The count is the read model's, and the lock
//! is held until the command's read-your-writes wait has seen the new item in it, so the
//! next creation counts it. Unlimited tiers take no lock.

use std::hash::{Hash, Hasher};

use pulsar_domain::entitlements::Feature;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::{Mutex, MutexGuard};

use super::{AppState, Error, Result};

/// In-process stripes: unrelated workspaces rarely share one, and the map never grows.
const STRIPES: usize = 64;

/// Longest wait for another node's creation before answering 503.
const LOCK_TIMEOUT: &str = "10s";

#[derive(Debug)]
pub struct LimitLocks {
    stripes: Vec<Mutex<()>>,
}

impl Default for LimitLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }
}

/// One creation's turn; [`LimitHold::release`] ends it (a dropped hold rolls back, which
/// releases the database lock as well).
#[derive(Debug)]
pub struct LimitHold<'a> {
    _local: MutexGuard<'a, ()>,
    transaction: Transaction<'static, Postgres>,
}

impl LimitLocks {
    /// Waits for the turn of `workspace_id`'s `feature`.
    pub async fn hold(
        &self,
        pool: &PgPool,
        workspace_id: &str,
        feature: Feature,
    ) -> Result<LimitHold<'_>> {
        let key = format!("pulsar.limit.{workspace_id}.{}", feature.as_str());
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let local = self.stripes[hasher.finish() as usize % STRIPES]
            .lock()
            .await;
        let mut transaction = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut *transaction)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut *transaction)
            .await
            .map_err(|error| match &error {
                sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03") => {
                    Error::Unavailable(
                        "Another creation in this workspace is taking long; try again.".into(),
                    )
                }
                _ => error.into(),
            })?;
        Ok(LimitHold {
            _local: local,
            transaction,
        })
    }
}

impl LimitHold<'_> {
    pub async fn release(self) {
        if let Err(error) = self.transaction.commit().await {
            tracing::warn!(%error, "could not end a limit lock's transaction; it rolls back");
        }
    }
}

/// 403 `feature_limit_reached` when `used` leaves no room under `tier`'s limit.
pub fn refuse_when_full(
    state: &AppState,
    tier: pulsar_domain::workspace::Tier,
    feature: Feature,
    used: u64,
) -> Result<()> {
    match tier.limit(feature) {
        Some(limit) if used >= limit => Err(Error::FeatureLimitReached {
            feature: feature.as_str(),
            limit: limit as i64,
            tier: tier.as_str(),
            upgrade_url: state.config.upgrade_url.clone(),
        }),
        _ => Ok(()),
    }
}

/// Runs `create`, one more of `feature` in `workspace_id`, within the tier's limit: when
/// the tier limits the feature, the count and the creation take the (workspace, feature)
/// turn in a task of their own (a client that goes away cannot cut it short), and a full
/// workspace gets 403 `feature_limit_reached`. `create` must wait until the read model
/// the count reads has its item. Afterwards the feature's thresholds are checked.
pub async fn create_within<T, F, Fut>(
    state: &AppState,
    workspace_id: &str,
    feature: Feature,
    create: F,
) -> Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tier, _) = super::entitlements::used(state, workspace_id, feature).await?;
    if tier.limit(feature).is_none() {
        return create().await;
    }
    let (turn_state, workspace) = (state.clone(), workspace_id.to_string());
    let created = tokio::spawn(async move {
        let state = turn_state;
        let hold = state.limits.hold(&state.pool, &workspace, feature).await?;
        let created = async {
            let (tier, used) = super::entitlements::used(&state, &workspace, feature).await?;
            refuse_when_full(&state, tier, feature, used)?;
            create().await
        }
        .await;
        hold.release().await;
        created
    })
    .await
    .map_err(|error| Error::Internal(format!("a creation's task failed: {error}")))??;
    super::alerts::spawn_observe(state, workspace_id, feature);
    Ok(created)
}
