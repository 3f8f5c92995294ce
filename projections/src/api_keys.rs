//! The `api_keys` projection: the `api_keys` read model lists and audits are served from.

use chrono::SubsecRound;
use cqrs_es::Aggregate;
use pulsar_domain::api_key::{ApiKey, ApiKeyEvent};
use pulsar_domain::workspace::Tier;
use sqlx::PgConnection;

use crate::list::{Column, ListSpec};
use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// The list `/api-keys` serves.
pub static LIST: ListSpec = ListSpec {
    from: "api_keys k LEFT JOIN api_key_usage u ON u.key_id = k.id",
    item: concat!(
        "jsonb_build_object('id', k.id, 'name', k.name, 'prefix', k.prefix, 'masked', k.masked,
            'scopes', to_jsonb(k.scopes), 'rate_limit_tier', k.rate_limit_tier,
            'ip_allowlist', to_jsonb(k.ip_allowlist), 'max_age_days', k.max_age_days,
            'expires_at', rfc3339(k.expires_at), 'last_used_at', rfc3339(u.last_used_at),
            'created_at', rfc3339(k.created_at), 'updated_at', rfc3339(k.updated_at),
            'created_by', ",
        crate::list::with_actor_name!("k"),
        ", 'status', api_key_status(k, now()),
            'replaced_by', k.replaced_by, 'rotated_from', k.rotated_from, 'version', k.version,
            'grace_period_ends_at', rfc3339(k.grace_period_ends_at))"
    ),

    id: "k.id",
    sortable: &[
        Column {
            name: "name",
            sql: "k.name",
        },
        Column {
            name: "created_at",
            sql: "k.created_at",
        },
        Column {
            name: "updated_at",
            sql: "k.updated_at",
        },
        Column {
            name: "last_used_at",
            sql: "u.last_used_at",
        },
        Column {
            name: "expires_at",
            sql: "k.expires_at",
        },
    ],
    nullable: &["last_used_at", "expires_at"],
    filters: &[
        Column {
            name: "status",
            sql: "api_key_status(k, now())",
        },
        Column {
            name: "rate_limit_tier",
            sql: "k.rate_limit_tier",
        },
    ],
    created_at: Some("k.created_at"),
    updated_at: Some("k.updated_at"),
    search: Some("k.search"),
    fields: &[
        "id",
        "name",
        "prefix",
        "masked",
        "scopes",
        "rate_limit_tier",
        "ip_allowlist",
        "max_age_days",
        "expires_at",
        "last_used_at",
        "created_at",
        "updated_at",
        "created_by",
        "status",
        "replaced_by",
        "rotated_from",
        "grace_period_ends_at",
        "version",
    ],
    includes: &[],
    filter_values: &[
        ("status", &["active", "rotating", "expired", "revoked"]),
        ("rate_limit_tier", Tier::NAMES),
    ],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "-created_at",
};

/// Keeps the `api_keys` read model.
#[derive(Debug, Default)]
pub struct ApiKeysProjection;

/// The subscriber name handlers wait on after key commands.
pub const NAME: &str = "api_keys";

impl Projection for ApiKeysProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[ApiKey::TYPE]
    }

    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables {
            owned: vec!["api_keys"],
            shared: vec![],
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type != ApiKey::TYPE {
            return Ok(());
        }
        let id = &event.aggregate_id;
        let at = event.recorded_at.trunc_subsecs(3);
        match event.decode::<ApiKey>()?.payload {
            ApiKeyEvent::ApiKeyCreated {
                workspace_id,
                public_id,
                prefix,
                masked,
                settings,
                created_by,
                rotated_from,
            } => {
                sqlx::query(
                    "INSERT INTO api_keys (id, workspace_id, public_id, name, prefix, masked, scopes,
                        rate_limit_tier, ip_allowlist, max_age_days, expires_at, created_by,
                        rotated_from, version, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
                             -- As the event states it; lists add the name as they read.
                             jsonb_build_object('type', $12::text, 'id', $15::text),
                             $13, 1, $14, $14)",
                )
                .bind(id)
                .bind(workspace_id)
                .bind(public_id)
                .bind(settings.name)
                .bind(prefix)
                .bind(masked)
                .bind(settings.scopes)
                .bind(settings.rate_limit_tier.map(|t| t.as_str()))
                .bind(settings.ip_allowlist)
                .bind(settings.max_age_days.map(|d| d as i32))
                .bind(settings.expires_at)
                .bind(created_by.actor_type.as_str())
                .bind(rotated_from)
                .bind(at)
                .bind(created_by.id)
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ApiKeyUpdated { settings, .. } => {
                sqlx::query(
                    "UPDATE api_keys SET name = $2, scopes = $3, rate_limit_tier = $4, ip_allowlist = $5,
                        max_age_days = $6, expires_at = $7, updated_at = $8 WHERE id = $1",
                )
                .bind(id)
                .bind(settings.name)
                .bind(settings.scopes)
                .bind(settings.rate_limit_tier.map(|t| t.as_str()))
                .bind(settings.ip_allowlist)
                .bind(settings.max_age_days.map(|d| d as i32))
                .bind(settings.expires_at)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ApiKeyRotated {
                replaced_by,
                grace_period_ends_at,
            } => {
                sqlx::query(
                    "UPDATE api_keys SET replaced_by = $2, grace_period_ends_at = $3, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(replaced_by)
                .bind(grace_period_ends_at)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            ApiKeyEvent::ApiKeyRevoked => {
                sqlx::query("UPDATE api_keys SET revoked_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
            }
            ApiKeyEvent::ApiKeyExpiredByRotation => {
                sqlx::query("UPDATE api_keys SET expired_at = $2, updated_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        sqlx::query("UPDATE api_keys SET version = $2 WHERE id = $1")
            .bind(id)
            .bind(event.sequence)
            .execute(conn)
            .await?;
        Ok(())
    }
}
