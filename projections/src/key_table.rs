//! The in-memory key table: what every process verifies API keys against, without a
//! database round trip.
//!
//! It is a [`LocalProjection`] of the `ApiKey` stream: loaded from the log at start and
//! kept current by tailing it, woken by `LISTEN`, so a revocation or rotation committed
//! by any process reaches every other within a notification's latency (the poll is the
//! fallback bound). Secret hashes come from `api_key_secrets` (they are never in events).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use ipnet::IpNet;
use pulsar_domain::api_key::{parse_allowlist, ApiKey, ApiKeyEvent, ApiKeySettings};
use pulsar_domain::scopes::ScopeSet;
use pulsar_domain::workspace::Tier;
use sqlx::{PgPool, Row};

use crate::log::StoredEvent;
use crate::subscription::{LocalProjection, ProjectionError};

/// The subscriber name writers wait on so a new or changed key works at once here.
pub const NAME: &str = "key_table";

/// Everything the policy chain needs about one key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub key_id: String,
    pub public_id: String,
    pub workspace_id: String,
    pub name: String,
    pub secret_hash: [u8; 32],
    pub scopes: ScopeSet,
    pub allowlist: Vec<IpNet>,
    /// The key's own tier, else its workspace's.
    pub tier: Tier,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_age_days: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub grace_period_ends_at: Option<DateTime<Utc>>,
    pub revoked: bool,
}

impl KeyEntry {
    /// Whether the key may be used at `now` (not revoked, not expired, not past a
    /// rotation's grace period).
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        !self.revoked
            && self.expires_at.is_none_or(|at| at > now)
            && self.grace_period_ends_at.is_none_or(|end| end > now)
    }

    /// Whether the key is older than its `max_age_days` policy allows.
    pub fn too_old(&self, now: DateTime<Utc>) -> bool {
        self.max_age_days
            .is_some_and(|days| now - self.created_at > chrono::Duration::days(i64::from(days)))
    }

    fn with_settings(&mut self, settings: &ApiKeySettings, workspace_tier: Tier) {
        self.name = settings.name.clone();
        self.scopes = ScopeSet::parse(&settings.scopes).unwrap_or(ScopeSet::EMPTY);
        // Entries were validated before the event was written; a bad one denies all.
        self.allowlist = parse_allowlist(&settings.ip_allowlist)
            .unwrap_or_else(|_| vec![IpNet::from(std::net::IpAddr::from([0, 0, 0, 0])).trunc()]);
        self.tier = settings.rate_limit_tier.unwrap_or(workspace_tier);
        self.expires_at = settings.expires_at;
        self.max_age_days = settings.max_age_days;
    }
}

/// Keys by public id (the `apiKey` half) and by key id.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_public: RwLock<HashMap<String, Arc<KeyEntry>>>,
    public_by_id: RwLock<HashMap<String, String>>,
    workspace_tiers: RwLock<HashMap<String, Tier>>,
}

impl KeyTable {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The key whose `apiKey` half is `public_id`.
    pub fn get(&self, public_id: &str) -> Option<Arc<KeyEntry>> {
        self.by_public
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(public_id)
            .cloned()
    }

    /// The key with id `key_id`.
    pub fn get_by_id(&self, key_id: &str) -> Option<Arc<KeyEntry>> {
        let public = self
            .public_by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key_id)
            .cloned()?;
        self.get(&public)
    }

    pub fn len(&self) -> usize {
        self.by_public
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts or replaces an entry (also used by benchmarks to fill a table).
    pub fn insert(&self, entry: KeyEntry) {
        self.public_by_id
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.key_id.clone(), entry.public_id.clone());
        self.by_public
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.public_id.clone(), Arc::new(entry));
    }

    fn update(&self, key_id: &str, f: impl FnOnce(&mut KeyEntry)) {
        let Some(current) = self.get_by_id(key_id) else {
            return;
        };
        let mut next = (*current).clone();
        f(&mut next);
        self.insert(next);
    }

    async fn workspace_tier(
        &self,
        pool: &PgPool,
        workspace_id: &str,
    ) -> Result<Tier, ProjectionError> {
        if let Some(tier) = self
            .workspace_tiers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(workspace_id)
        {
            return Ok(*tier);
        }
        let tier: Option<String> = sqlx::query_scalar("SELECT tier FROM workspaces WHERE id = $1")
            .bind(workspace_id)
            .fetch_optional(pool)
            .await?;
        let tier = tier.as_deref().and_then(Tier::parse).unwrap_or_default();
        self.workspace_tiers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(workspace_id.to_string(), tier);
        Ok(tier)
    }
}

impl LocalProjection for Arc<KeyTable> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[ApiKey::TYPE]
    }

    async fn apply(&self, pool: &PgPool, events: &[StoredEvent]) -> Result<(), ProjectionError> {
        // Secret hashes of the keys created in this batch, in one query.
        let created: Vec<String> = events
            .iter()
            .filter(|e| e.event_type == "ApiKeyCreated")
            .map(|e| e.aggregate_id.clone())
            .collect();
        let mut hashes: HashMap<String, [u8; 32]> = HashMap::new();
        if !created.is_empty() {
            let rows = sqlx::query(
                "SELECT key_id, secret_hash FROM api_key_secrets WHERE key_id = ANY($1)",
            )
            .bind(&created)
            .fetch_all(pool)
            .await?;
            for row in rows {
                let hash: Vec<u8> = row.try_get("secret_hash")?;
                let hash: [u8; 32] = hash
                    .try_into()
                    .map_err(|_| ProjectionError::Decode("secret hash is not 32 bytes".into()))?;
                hashes.insert(row.try_get("key_id")?, hash);
            }
        }
        for event in events {
            let key_id = event.aggregate_id.as_str();
            match event.decode::<ApiKey>()?.payload {
                ApiKeyEvent::ApiKeyCreated {
                    workspace_id,
                    public_id,
                    settings,
                    ..
                } => {
                    let workspace_tier = self.workspace_tier(pool, &workspace_id).await?;
                    // A key whose secret row is missing can never verify.
                    let secret_hash = hashes.get(key_id).copied().unwrap_or([0; 32]);
                    let mut entry = KeyEntry {
                        key_id: key_id.to_string(),
                        public_id,
                        workspace_id,
                        name: String::new(),
                        secret_hash,
                        scopes: ScopeSet::EMPTY,
                        allowlist: Vec::new(),
                        tier: workspace_tier,
                        expires_at: None,
                        max_age_days: None,
                        created_at: event.recorded_at,
                        grace_period_ends_at: None,
                        revoked: secret_hash == [0; 32],
                    };
                    entry.with_settings(&settings, workspace_tier);
                    self.insert(entry);
                }
                ApiKeyEvent::ApiKeyUpdated { settings, .. } => {
                    let workspace_id = self.get_by_id(key_id).map(|e| e.workspace_id.clone());
                    let workspace_tier = match workspace_id {
                        Some(id) => self.workspace_tier(pool, &id).await?,
                        None => Tier::default(),
                    };
                    self.update(key_id, |entry| {
                        entry.with_settings(&settings, workspace_tier)
                    });
                }
                ApiKeyEvent::ApiKeyRotated {
                    grace_period_ends_at,
                    ..
                } => self.update(key_id, |entry| {
                    entry.grace_period_ends_at = Some(grace_period_ends_at)
                }),
                ApiKeyEvent::ApiKeyRevoked => self.update(key_id, |entry| entry.revoked = true),
                ApiKeyEvent::ApiKeyExpiredByRotation => {
                    self.update(key_id, |entry| entry.revoked = true)
                }
            }
        }
        Ok(())
    }
}
