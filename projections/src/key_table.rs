//! The in-memory key table: what every process verifies API keys against, without a
//! database round trip.
//!
//! It is a [`LocalProjection`] of the `ApiKey` and `Workspace` streams: loaded from the
//! log at start and kept current by tailing it, woken by `LISTEN`, so a revocation,
//! rotation or workspace deletion committed by any process reaches every other within a
//! notification's latency (the poll is the fallback bound). Secret hashes come from
//! `api_key_secrets` (they are never in events); everything else is folded from the
//! events alone: a key's effective tier follows its workspace's tier as the log states
//! it, and a deleted workspace's keys stop with it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use ipnet::IpNet;
use pulsar_domain::api_key::{parse_allowlist, ApiKey, ApiKeyEvent, ApiKeySettings};
use pulsar_domain::scopes::ScopeSet;
use pulsar_domain::workspace::{Tier, Workspace, WorkspaceEvent};
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
    /// The tier the key is limited by: its own, else its workspace's.
    pub tier: Tier,
    /// The key's own tier, when it has one.
    pub own_tier: Option<Tier>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_age_days: Option<u32>,
    pub created_at: DateTime<Utc>,
    pub grace_period_ends_at: Option<DateTime<Utc>>,
    pub revoked: bool,
    /// The key's workspace was deleted: the key is dead with it.
    pub workspace_deleted: bool,
}

impl KeyEntry {
    /// Whether the key may be used at `now` (not revoked, not expired, not past a
    /// rotation's grace period).
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        !self.revoked
            && !self.workspace_deleted
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
        self.own_tier = settings.rate_limit_tier;
        self.tier = settings.rate_limit_tier.unwrap_or(workspace_tier);
        self.expires_at = settings.expires_at;
        self.max_age_days = settings.max_age_days;
    }
}

/// What the key table knows of a workspace, from its events.
#[derive(Debug, Clone, Default)]
struct WorkspaceFacts {
    tier: Tier,
    deleted: bool,
    /// Its keys, by key id.
    keys: Vec<String>,
}

/// Keys by public id (the `apiKey` half) and by key id, and the workspace facts they
/// depend on.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_public: RwLock<HashMap<String, Arc<KeyEntry>>>,
    public_by_id: RwLock<HashMap<String, String>>,
    workspaces: RwLock<HashMap<String, WorkspaceFacts>>,
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

    /// The workspace's facts as the log has stated them so far (a key's workspace is
    /// always created before the key, so an unknown one is only a key table that has
    /// not read that far, which the log order rules out).
    fn workspace(&self, workspace_id: &str) -> WorkspaceFacts {
        self.workspaces
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(workspace_id)
            .cloned()
            .unwrap_or_default()
    }

    fn apply_workspace(&self, workspace_id: &str, event: WorkspaceEvent) {
        match event {
            WorkspaceEvent::WorkspaceCreated { tier, .. } => {
                self.workspaces
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        workspace_id.to_string(),
                        WorkspaceFacts {
                            tier,
                            ..WorkspaceFacts::default()
                        },
                    );
            }
            WorkspaceEvent::WorkspaceDeleted => {
                let keys = {
                    let mut workspaces = self.workspaces.write().unwrap_or_else(|e| e.into_inner());
                    let facts = workspaces.entry(workspace_id.to_string()).or_default();
                    facts.deleted = true;
                    facts.keys.clone()
                };
                for key_id in keys {
                    self.update(&key_id, |entry| entry.workspace_deleted = true);
                }
            }
            WorkspaceEvent::WorkspaceTierChanged { tier, .. } => {
                let keys = {
                    let mut workspaces = self.workspaces.write().unwrap_or_else(|e| e.into_inner());
                    let facts = workspaces.entry(workspace_id.to_string()).or_default();
                    facts.tier = tier;
                    facts.keys.clone()
                };
                // Keys without a tier of their own follow their workspace's.
                for key_id in keys {
                    self.update(&key_id, |entry| {
                        entry.tier = entry.own_tier.unwrap_or(tier);
                    });
                }
            }
            WorkspaceEvent::WorkspaceUpdated { .. }
            | WorkspaceEvent::MemberAdded { .. }
            | WorkspaceEvent::MemberRoleChanged { .. }
            | WorkspaceEvent::MemberRemoved { .. } => {}
        }
    }
}

impl LocalProjection for Arc<KeyTable> {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[ApiKey::TYPE, Workspace::TYPE]
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
            if event.aggregate_type == Workspace::TYPE {
                self.apply_workspace(&event.aggregate_id, event.decode::<Workspace>()?.payload);
                continue;
            }
            let key_id = event.aggregate_id.as_str();
            match event.decode::<ApiKey>()?.payload {
                ApiKeyEvent::ApiKeyCreated {
                    workspace_id,
                    public_id,
                    settings,
                    ..
                } => {
                    let workspace = self.workspace(&workspace_id);
                    // A key whose secret row is missing can never verify.
                    let secret_hash = hashes.get(key_id).copied().unwrap_or([0; 32]);
                    let mut entry = KeyEntry {
                        key_id: key_id.to_string(),
                        public_id,
                        workspace_id: workspace_id.clone(),
                        name: String::new(),
                        secret_hash,
                        scopes: ScopeSet::EMPTY,
                        allowlist: Vec::new(),
                        tier: workspace.tier,
                        own_tier: None,
                        expires_at: None,
                        max_age_days: None,
                        created_at: event.recorded_at,
                        grace_period_ends_at: None,
                        revoked: secret_hash == [0; 32],
                        workspace_deleted: workspace.deleted,
                    };
                    entry.with_settings(&settings, workspace.tier);
                    self.insert(entry);
                    self.workspaces
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(workspace_id)
                        .or_default()
                        .keys
                        .push(key_id.to_string());
                }
                ApiKeyEvent::ApiKeyUpdated { settings, .. } => {
                    let workspace_tier = self
                        .get_by_id(key_id)
                        .map(|e| self.workspace(&e.workspace_id).tier)
                        .unwrap_or_default();
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
