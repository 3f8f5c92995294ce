//! The `webhooks` projection (the endpoints `GET /webhooks` lists) and the lists of
//! endpoints and deliveries.
//!
//! The endpoint rows are a pure fold of `Webhook` events. Delivery counters
//! (`success_count`, `consecutive_failures`, ...) are the dispatcher's, in
//! `webhook_stats`, joined as the list reads.

use chrono::SubsecRound;
use cqrs_es::Aggregate;
use pulsar_domain::ids::prefix;
use pulsar_domain::webhook::{Webhook, WebhookEvent};
use sqlx::PgConnection;

use crate::list::{Column, ListSpec};
use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// The subscriber name webhook commands wait on.
pub const NAME: &str = "webhooks";

/// The list `/webhooks` serves.
pub static LIST: ListSpec = ListSpec {
    from: "webhooks w LEFT JOIN webhook_stats s ON s.endpoint_id = w.id",
    item: "jsonb_build_object('id', w.id, 'url', w.url, 'description', w.description,
            'events', to_jsonb(w.events), 'is_active', w.is_active,
            'disabled_reason', w.disabled_reason, 'rate_limit', w.rate_limit,
            'success_count', coalesce(s.success_count, 0),
            'failure_count', coalesce(s.failure_count, 0),
            'consecutive_failures', coalesce(s.consecutive_failures, 0),
            'last_delivery_at', rfc3339(s.last_delivery_at),
            'created_at', rfc3339(w.created_at), 'updated_at', rfc3339(w.updated_at),
            'version', w.version)",
    id: "w.id",
    sortable: &[
        Column {
            name: "created_at",
            sql: "w.created_at",
        },
        Column {
            name: "updated_at",
            sql: "w.updated_at",
        },
        Column {
            name: "url",
            sql: "w.url",
        },
    ],
    nullable: &[],
    filters: &[Column {
        name: "is_active",
        sql: "w.is_active::text",
    }],
    filter_values: &[("is_active", &["true", "false"])],
    id_filters: &[],
    contains_filters: &[],
    created_at: Some("w.created_at"),
    updated_at: Some("w.updated_at"),
    search: None,
    fields: &[
        "id",
        "url",
        "description",
        "events",
        "is_active",
        "disabled_reason",
        "rate_limit",
        "success_count",
        "failure_count",
        "consecutive_failures",
        "last_delivery_at",
        "created_at",
        "updated_at",
        "version",
    ],
    includes: &[],
    default_sort: "-created_at",
};

/// Delivery statuses, as the API names them.
pub const DELIVERY_STATUSES: &[&str] = &["pending", "success", "failed", "retrying", "dead"];

/// The list `/webhooks/{id}/deliveries` serves.
pub static DELIVERIES: ListSpec = ListSpec {
    from: "webhook_deliveries d",
    item: "jsonb_build_object('id', d.id, 'event_id', d.event_id, 'event_type', d.event_type,
            'status', d.status, 'response_code', d.response_code, 'attempt', d.attempt,
            'next_retry_at', CASE WHEN d.status IN ('pending', 'retrying')
                                  THEN rfc3339(d.next_attempt_at) END,
            'delivered_at', rfc3339(d.delivered_at), 'created_at', rfc3339(d.created_at))",
    id: "d.id",
    sortable: &[Column {
        name: "created_at",
        sql: "d.created_at",
    }],
    nullable: &[],
    filters: &[
        Column {
            name: "status",
            sql: "d.status",
        },
        Column {
            name: "event_type",
            sql: "d.event_type",
        },
        Column {
            name: "event_id",
            sql: "d.event_id",
        },
    ],
    filter_values: &[("status", DELIVERY_STATUSES)],
    id_filters: &[],
    contains_filters: &[],
    created_at: Some("d.created_at"),
    updated_at: None,
    search: None,
    fields: &[
        "id",
        "event_id",
        "event_type",
        "status",
        "response_code",
        "attempt",
        "next_retry_at",
        "delivered_at",
        "created_at",
    ],
    includes: &[],
    default_sort: "-created_at",
};

/// The id prefix of endpoints, for path checks.
pub const ID_PREFIX: &str = prefix::WEBHOOK;

/// Keeps the `webhooks` read model.
#[derive(Debug, Default)]
pub struct WebhooksProjection;

impl Projection for WebhooksProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Webhook::TYPE]
    }

    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables {
            owned: vec!["webhooks"],
            shared: vec![],
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        if event.aggregate_type != Webhook::TYPE {
            return Ok(());
        }
        let id = &event.aggregate_id;
        let at = event.recorded_at.trunc_subsecs(3);
        match event.decode::<Webhook>()?.payload {
            WebhookEvent::WebhookCreated {
                workspace_id,
                settings,
                secret_fingerprint,
                created_by,
            } => {
                sqlx::query(
                    "INSERT INTO webhooks (id, workspace_id, url, description, events, is_active,
                        rate_limit, secret_fingerprint, created_by, created_at, updated_at, version)
                     VALUES ($1, $2, $3, $4, $5, true, $6, $7,
                             jsonb_build_object('type', $8::text, 'id', $9::text), $10, $10, $11)",
                )
                .bind(id)
                .bind(workspace_id)
                .bind(settings.url)
                .bind(settings.description)
                .bind(settings.events)
                .bind(settings.rate_limit.map(|r| r as i32))
                .bind(secret_fingerprint)
                .bind(created_by.actor_type.as_str())
                .bind(created_by.id)
                .bind(at)
                .bind(event.sequence)
                .execute(conn)
                .await?;
            }
            WebhookEvent::WebhookUpdated {
                settings,
                is_active,
                ..
            } => {
                sqlx::query(
                    "UPDATE webhooks SET url = $2, description = $3, events = $4, rate_limit = $5,
                        is_active = $6,
                        disabled_reason = CASE WHEN $6 THEN NULL ELSE disabled_reason END,
                        updated_at = $7, version = $8
                      WHERE id = $1",
                )
                .bind(id)
                .bind(settings.url)
                .bind(settings.description)
                .bind(settings.events)
                .bind(settings.rate_limit.map(|r| r as i32))
                .bind(is_active)
                .bind(at)
                .bind(event.sequence)
                .execute(conn)
                .await?;
            }
            WebhookEvent::WebhookSecretRotated {
                secret_fingerprint, ..
            } => {
                sqlx::query(
                    "UPDATE webhooks SET secret_fingerprint = $2, updated_at = $3, version = $4
                      WHERE id = $1",
                )
                .bind(id)
                .bind(secret_fingerprint)
                .bind(at)
                .bind(event.sequence)
                .execute(conn)
                .await?;
            }
            WebhookEvent::WebhookDisabled { reason } => {
                sqlx::query(
                    "UPDATE webhooks SET is_active = false, disabled_reason = $2, updated_at = $3,
                        version = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(reason)
                .bind(at)
                .bind(event.sequence)
                .execute(conn)
                .await?;
            }
            WebhookEvent::WebhookDeleted => {
                sqlx::query("DELETE FROM webhooks WHERE id = $1")
                    .bind(id)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }
}
