//! The public event catalog: what leaves the system.
//!
//! Stored events are internal records (serde's shape of each aggregate's event enum).
//! Everything that leaves the system (webhook bodies, audit exports, MCP) goes through
//! this catalog instead: each internal event maps to one public type
//! (`<resource>.<past-tense verb>`, e.g. `projects.updated`) and a payload that is the
//! resource as the API shows it after the change, built from the aggregate's event
//! stream alone (a fold, no read model), so replaying history gives the same bodies.
//!
//! Layout:
//! - [`EVENT_TYPES`]: the catalog as data (name, description, resource), from which
//!   `GET /event-types` and the OpenAPI `webhooks` section are generated.
//! - [`Published`]: per aggregate, the mapping of every event variant (an exhaustive
//!   `match`, so a new variant does not compile until it is mapped) and the fold that
//!   builds its payload.
//! - [`publish`]: folds a stream into its public events.
//!
//! Versioning: a type's payload only grows (new members); a breaking change is a new
//! type. See docs/events.md.

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api_key::{ApiKey, ApiKeyEvent};
use crate::entitlements::{next_month, Period};
use crate::metadata::Actor;
use crate::record::{Record, RecordEvent, RecordKind};
use crate::scopes::Role;
use crate::tracking::{PixelEvent, PixelEventEvent, SeoEvent, SeoReport};
use crate::usage::{EntitlementEvent, EntitlementPeriod, UsageEvent, UsageRecord};
use crate::user::{User, UserEvent};
use crate::webhook::{Webhook, WebhookEvent};
use crate::workspace::{Tier, Workspace, WorkspaceEvent, WorkspaceSettings};
use crate::workspace_data::{
    CompanyKind, ContactKind, DealKind, DocumentKind, ProjectKind, TaskKind,
};

/// What a public event's data describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicResource {
    Workspace,
    Member,
    ApiKey,
    /// A webhook endpoint (`webhooks.*`).
    Webhook,
    /// Workspace data of the kind with this aggregate type (`Project`, ...).
    Record(&'static str),
    /// A feature's standing against its limit (`entitlements.*`).
    Entitlement,
}

/// One public event type.
#[derive(Debug, Clone, Copy)]
pub struct EventType {
    /// `<resource>.<past-tense verb>`.
    pub name: &'static str,
    pub description: &'static str,
    pub resource: PublicResource,
}

macro_rules! record_types {
    ($($resource:literal, $kind:ty, $noun:literal;)*) => {
        [$(
            EventType { name: concat!($resource, ".created"), description: concat!("A ", $noun, " was created."), resource: PublicResource::Record(<$kind as RecordKind>::TYPE) },
            EventType { name: concat!($resource, ".updated"), description: concat!("A ", $noun, " was changed; `data` is the whole ", $noun, " after the change, `changed` names what changed."), resource: PublicResource::Record(<$kind as RecordKind>::TYPE) },
            EventType { name: concat!($resource, ".deleted"), description: concat!("A ", $noun, " was deleted; `data` is its last state, with `deleted: true`."), resource: PublicResource::Record(<$kind as RecordKind>::TYPE) },
        )*]
    };
}

const RECORD_TYPES: [EventType; 18] = record_types! {
    "projects", ProjectKind, "project";
    "tasks", TaskKind, "task";
    "contacts", ContactKind, "contact";
    "companies", CompanyKind, "company";
    "deals", DealKind, "deal";
    "documents", DocumentKind, "document";
};

const OTHER_TYPES: [EventType; 14] = [
    EventType { name: "workspaces.created", description: "A workspace was created.", resource: PublicResource::Workspace },
    EventType { name: "workspaces.updated", description: "A workspace's name, settings or tier changed; `data` is the workspace after the change.", resource: PublicResource::Workspace },
    EventType { name: "workspaces.deleted", description: "A workspace was deleted; its keys and sessions stopped with it.", resource: PublicResource::Workspace },
    EventType { name: "members.added", description: "A user became a member of the workspace.", resource: PublicResource::Member },
    EventType { name: "members.updated", description: "A member's role changed (`previous_role` says from what).", resource: PublicResource::Member },
    EventType { name: "members.removed", description: "A member left or was removed.", resource: PublicResource::Member },
    EventType { name: "api_keys.created", description: "An API key was created (never its secret).", resource: PublicResource::ApiKey },
    EventType { name: "api_keys.updated", description: "An API key's name, scopes, allowlist, expiry, age policy or tier changed.", resource: PublicResource::ApiKey },
    EventType { name: "api_keys.rotated", description: "An API key was rotated: it keeps working until `grace_period_ends_at`, `replaced_by` names the new key.", resource: PublicResource::ApiKey },
    EventType { name: "api_keys.revoked", description: "An API key was revoked; it stopped working at once.", resource: PublicResource::ApiKey },
    EventType { name: "api_keys.expired", description: "A rotated API key's grace period ended; it no longer works.", resource: PublicResource::ApiKey },
    EventType { name: "webhooks.disabled", description: "A webhook endpoint of the workspace was disabled (it answered 410 Gone, or had no success for too long); `disabled_reason` says why. Delivered to the workspace's other endpoints.", resource: PublicResource::Webhook },
    EventType { name: "entitlements.threshold_reached", description: "A feature's usage passed 80% or 100% of the tier's limit (`threshold`); sent once per feature, threshold and UTC month.", resource: PublicResource::Entitlement },
    EventType { name: "webhooks.test", description: "Sent by `POST /webhooks/{id}/test` to that endpoint only, never stored; `data` is the endpoint.", resource: PublicResource::Webhook },
];

/// Every public event type, in the order the documentation lists them.
pub fn event_types() -> impl Iterator<Item = &'static EventType> {
    OTHER_TYPES.iter().chain(RECORD_TYPES.iter())
}

/// The catalog entry named `name`.
pub fn event_type(name: &str) -> Option<&'static EventType> {
    event_types().find(|t| t.name == name)
}

/// `{type, id}` of whoever acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActorRef {
    /// `user`, `api_key` or `system`.
    #[serde(rename = "type")]
    pub actor_type: String,
    pub id: String,
}

impl From<&Actor> for ActorRef {
    fn from(actor: &Actor) -> Self {
        Self {
            actor_type: actor.actor_type.as_str().to_string(),
            id: actor.id.clone(),
        }
    }
}

/// What the stored event says besides its payload.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    pub aggregate_type: &'a str,
    pub aggregate_id: &'a str,
    pub sequence: i64,
    pub recorded_at: DateTime<Utc>,
    pub actor: Actor,
    pub workspace_id: Option<&'a str>,
}

/// The public id of the stored event `sequence` of an aggregate: webhooks' `webhook-id`
/// and the audit log's `event_id`.
pub fn event_id(aggregate_type: &str, aggregate_id: &str, sequence: i64) -> String {
    let digest = Sha256::digest(format!("{aggregate_type}/{aggregate_id}/{sequence}").as_bytes());
    format!("evt_{}", hex::encode(&digest[..16]))
}

impl Envelope<'_> {
    /// The public event id: the same for one stored event however often it is sent
    /// (live, retried, recovered, replayed), so receivers can drop duplicates.
    pub fn event_id(&self) -> String {
        event_id(self.aggregate_type, self.aggregate_id, self.sequence)
    }

    fn at(&self) -> String {
        timestamp(self.recorded_at)
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One public event: a webhook body, an exported audit entry's public form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublicEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub workspace_id: Option<String>,
    pub created_at: String,
    pub data: Value,
}

/// An aggregate whose events are published: the mapping and the payload fold.
pub trait Published: Aggregate {
    /// The public resource folded from the stream so far.
    type View: Default + Serialize;

    /// The public type of `event`; `None` for internal facts nothing outside needs
    /// (a user's registration, which belongs to no workspace).
    fn public_type(event: &Self::Event) -> Option<&'static str>;

    /// Folds `event` into `view`, the resource after the change.
    fn fold(view: &mut Self::View, event: &Self::Event, envelope: &Envelope<'_>);

    /// The event's data: the resource after the change, by default the view itself.
    fn data(view: &Self::View, _event: &Self::Event) -> Value {
        serde_json::to_value(view).unwrap_or(Value::Null)
    }
}

/// Folds one aggregate's stream, in order, into its public events (`None` for events
/// that are not published).
pub fn publish<'a, A: Published>(
    stream: impl IntoIterator<Item = (A::Event, Envelope<'a>)>,
) -> Vec<Option<PublicEvent>> {
    let mut view = A::View::default();
    stream
        .into_iter()
        .map(|(event, envelope)| {
            A::fold(&mut view, &event, &envelope);
            A::public_type(&event).map(|event_type| PublicEvent {
                id: envelope.event_id(),
                event_type,
                workspace_id: envelope.workspace_id.map(str::to_string),
                created_at: envelope.at(),
                data: A::data(&view, &event),
            })
        })
        .collect()
}

/// The resource as it stood after the last event of `stream` (a prefix of one
/// aggregate's stream, in order): what `?as_of=` reads.
pub fn fold_view<'a, A: Published>(
    stream: impl IntoIterator<Item = (A::Event, Envelope<'a>)>,
) -> A::View {
    let mut view = A::View::default();
    for (event, envelope) in stream {
        A::fold(&mut view, &event, &envelope);
    }
    view
}

// Users ---------------------------------------------------------------------------------

impl Published for User {
    type View = ();

    fn public_type(event: &UserEvent) -> Option<&'static str> {
        match event {
            // A user belongs to no one workspace; members.added announces them where
            // they join.
            UserEvent::UserRegistered { .. } => None,
        }
    }

    fn fold(_: &mut (), _: &UserEvent, _: &Envelope<'_>) {}
}

// Workspaces and members -----------------------------------------------------------------

/// A workspace, as `workspaces.*` events carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceData {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub tier: Tier,
    pub settings: WorkspaceSettings,
    /// The public id for pixel tracking.
    pub pixel_id: String,
    pub created_by: Option<ActorRef>,
    pub created_at: String,
    pub updated_at: String,
    /// The aggregate version after the change (the `ETag` of `GET /workspaces/{id}`).
    pub version: i64,
    /// Present and `true` on `workspaces.deleted`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// A membership, as `members.*` events carry it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberData {
    pub workspace_id: String,
    pub user_id: String,
    /// The role now (on `members.removed`, the role they had).
    pub role: Role,
    /// On `members.updated`: the role before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_role: Option<Role>,
}

impl Published for Workspace {
    type View = WorkspaceData;

    fn public_type(event: &WorkspaceEvent) -> Option<&'static str> {
        Some(match event {
            WorkspaceEvent::WorkspaceCreated { .. } => "workspaces.created",
            WorkspaceEvent::WorkspaceUpdated { .. } => "workspaces.updated",
            WorkspaceEvent::WorkspaceTierChanged { .. } => "workspaces.updated",
            WorkspaceEvent::WorkspaceDeleted => "workspaces.deleted",
            WorkspaceEvent::MemberAdded { .. } => "members.added",
            WorkspaceEvent::MemberRoleChanged { .. } => "members.updated",
            WorkspaceEvent::MemberRemoved { .. } => "members.removed",
        })
    }

    fn fold(view: &mut WorkspaceData, event: &WorkspaceEvent, envelope: &Envelope<'_>) {
        view.version = envelope.sequence;
        match event {
            WorkspaceEvent::WorkspaceCreated {
                name,
                slug,
                tier,
                settings,
                pixel_id,
                ..
            } => {
                *view = WorkspaceData {
                    id: envelope.aggregate_id.to_string(),
                    name: name.clone(),
                    slug: slug.clone(),
                    tier: *tier,
                    settings: settings.clone(),
                    pixel_id: pixel_id.clone(),
                    created_by: Some(ActorRef::from(&envelope.actor)),
                    created_at: envelope.at(),
                    updated_at: envelope.at(),
                    version: envelope.sequence,
                    deleted: false,
                };
            }
            WorkspaceEvent::WorkspaceUpdated { name, settings, .. } => {
                view.name = name.clone();
                view.settings = settings.clone();
                view.updated_at = envelope.at();
            }
            WorkspaceEvent::WorkspaceTierChanged { tier, .. } => {
                view.tier = *tier;
                view.updated_at = envelope.at();
            }
            WorkspaceEvent::WorkspaceDeleted => {
                view.deleted = true;
                view.updated_at = envelope.at();
            }
            // Membership changes are their own resource; the workspace is unchanged.
            WorkspaceEvent::MemberAdded { .. }
            | WorkspaceEvent::MemberRoleChanged { .. }
            | WorkspaceEvent::MemberRemoved { .. } => {}
        }
    }

    fn data(view: &WorkspaceData, event: &WorkspaceEvent) -> Value {
        let member = |user_id: &str, role: Role, previous_role: Option<Role>| MemberData {
            workspace_id: view.id.clone(),
            user_id: user_id.to_string(),
            role,
            previous_role,
        };
        let data = match event {
            WorkspaceEvent::MemberAdded { user_id, role }
            | WorkspaceEvent::MemberRemoved { user_id, role } => {
                serde_json::to_value(member(user_id, *role, None))
            }
            WorkspaceEvent::MemberRoleChanged {
                user_id,
                role,
                previous_role,
            } => serde_json::to_value(member(user_id, *role, Some(*previous_role))),
            _ => serde_json::to_value(view),
        };
        data.unwrap_or(Value::Null)
    }
}

// API keys --------------------------------------------------------------------------------

/// An API key, as `api_keys.*` events carry it: never its secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyData {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    /// The key's first characters.
    pub prefix: String,
    pub masked: String,
    pub scopes: Vec<String>,
    /// `null`: the workspace's tier.
    pub rate_limit_tier: Option<Tier>,
    pub ip_allowlist: Vec<String>,
    pub max_age_days: Option<u32>,
    pub expires_at: Option<String>,
    pub created_by: Option<ActorRef>,
    pub created_at: String,
    pub updated_at: String,
    /// `active`, `rotating`, `expired` or `revoked`, as of the event.
    pub status: String,
    pub replaced_by: Option<String>,
    pub rotated_from: Option<String>,
    pub grace_period_ends_at: Option<String>,
    pub version: i64,
}

impl ApiKeyData {
    /// The key's status at `at`, as `GET /api-keys/{id}` reports it: the status its
    /// events left, unless its expiry or grace period had passed by then.
    pub fn status_at(&self, at: DateTime<Utc>) -> &str {
        let passed = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t <= at)
        };
        match self.status.as_str() {
            "active" | "rotating" if passed(&self.expires_at) => "expired",
            "rotating" if passed(&self.grace_period_ends_at) => "expired",
            status => status,
        }
    }
}

impl Published for ApiKey {
    type View = ApiKeyData;

    fn public_type(event: &ApiKeyEvent) -> Option<&'static str> {
        Some(match event {
            ApiKeyEvent::ApiKeyCreated { .. } => "api_keys.created",
            ApiKeyEvent::ApiKeyUpdated { .. } => "api_keys.updated",
            ApiKeyEvent::ApiKeyRotated { .. } => "api_keys.rotated",
            ApiKeyEvent::ApiKeyRevoked => "api_keys.revoked",
            ApiKeyEvent::ApiKeyExpiredByRotation => "api_keys.expired",
        })
    }

    fn fold(view: &mut ApiKeyData, event: &ApiKeyEvent, envelope: &Envelope<'_>) {
        view.version = envelope.sequence;
        view.updated_at = envelope.at();
        let settings = |view: &mut ApiKeyData, s: &crate::api_key::ApiKeySettings| {
            view.name = s.name.clone();
            view.scopes = s.scopes.clone();
            view.rate_limit_tier = s.rate_limit_tier;
            view.ip_allowlist = s.ip_allowlist.clone();
            view.max_age_days = s.max_age_days;
            view.expires_at = s.expires_at.map(timestamp);
        };
        match event {
            ApiKeyEvent::ApiKeyCreated {
                workspace_id,
                prefix,
                masked,
                settings: s,
                created_by,
                rotated_from,
                ..
            } => {
                *view = ApiKeyData {
                    id: envelope.aggregate_id.to_string(),
                    workspace_id: workspace_id.clone(),
                    prefix: prefix.clone(),
                    masked: masked.clone(),
                    created_by: Some(ActorRef::from(created_by)),
                    created_at: envelope.at(),
                    updated_at: envelope.at(),
                    status: "active".into(),
                    rotated_from: rotated_from.clone(),
                    version: envelope.sequence,
                    ..ApiKeyData::default()
                };
                settings(view, s);
            }
            ApiKeyEvent::ApiKeyUpdated { settings: s, .. } => settings(view, s),
            ApiKeyEvent::ApiKeyRotated {
                replaced_by,
                grace_period_ends_at,
            } => {
                view.status = "rotating".into();
                view.replaced_by = Some(replaced_by.clone());
                view.grace_period_ends_at = Some(timestamp(*grace_period_ends_at));
            }
            ApiKeyEvent::ApiKeyRevoked => view.status = "revoked".into(),
            ApiKeyEvent::ApiKeyExpiredByRotation => view.status = "expired".into(),
        }
    }
}

// Webhooks --------------------------------------------------------------------------------

/// A webhook endpoint, as `webhooks.*` events carry it: never its secret.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookData {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    pub description: Option<String>,
    /// Event types and wildcards it subscribes to.
    pub events: Vec<String>,
    pub is_active: bool,
    /// Why the dispatcher disabled it, while it is disabled.
    pub disabled_reason: Option<String>,
    /// Deliveries per second at most; `null` for no limit.
    pub rate_limit: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
    /// `true` once the endpoint is deleted (no public event carries it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl WebhookData {
    fn settings(&mut self, settings: &crate::webhook::WebhookSettings) {
        self.url = settings.url.clone();
        self.description = settings.description.clone();
        self.events = settings.events.clone();
        self.rate_limit = settings.rate_limit;
    }
}

impl Published for Webhook {
    type View = WebhookData;

    fn public_type(event: &WebhookEvent) -> Option<&'static str> {
        match event {
            WebhookEvent::WebhookDisabled { .. } => Some("webhooks.disabled"),
            // Configuration changes are in the audit log; receivers only need to hear
            // that an endpoint stopped receiving.
            WebhookEvent::WebhookCreated { .. }
            | WebhookEvent::WebhookUpdated { .. }
            | WebhookEvent::WebhookSecretRotated { .. }
            | WebhookEvent::WebhookDeleted => None,
        }
    }

    fn fold(view: &mut WebhookData, event: &WebhookEvent, envelope: &Envelope<'_>) {
        view.version = envelope.sequence;
        view.updated_at = envelope.at();
        match event {
            WebhookEvent::WebhookCreated {
                workspace_id,
                settings,
                ..
            } => {
                *view = WebhookData {
                    id: envelope.aggregate_id.to_string(),
                    workspace_id: workspace_id.clone(),
                    is_active: true,
                    created_at: envelope.at(),
                    updated_at: envelope.at(),
                    version: envelope.sequence,
                    ..WebhookData::default()
                };
                view.settings(settings);
            }
            WebhookEvent::WebhookUpdated {
                settings,
                is_active,
                ..
            } => {
                view.settings(settings);
                view.is_active = *is_active;
                if *is_active {
                    view.disabled_reason = None;
                }
            }
            WebhookEvent::WebhookSecretRotated { .. } => {}
            WebhookEvent::WebhookDeleted => view.deleted = true,
            WebhookEvent::WebhookDisabled { reason } => {
                view.is_active = false;
                view.disabled_reason = Some(reason.clone());
            }
        }
    }
}

// Usage, entitlements, tracking ------------------------------------------------------------

/// A feature's standing when it passed a threshold, as `entitlements.threshold_reached`
/// carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ThresholdData {
    pub workspace_id: String,
    /// `projects`, `api_calls`, ...
    pub feature: String,
    /// 80 or 100: the percentage of the limit passed.
    pub threshold: u8,
    /// Usage when it was noticed (at or above the threshold).
    pub used: u64,
    pub limit: u64,
    /// The UTC month the alert belongs to, `YYYY-MM`; each threshold is sent once in it.
    pub period: String,
    /// When monthly usage (API calls, pixel events) starts again from zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
}

impl Published for EntitlementPeriod {
    type View = ThresholdData;

    fn public_type(event: &EntitlementEvent) -> Option<&'static str> {
        match event {
            EntitlementEvent::ThresholdReached { .. } => Some("entitlements.threshold_reached"),
        }
    }

    fn fold(view: &mut ThresholdData, event: &EntitlementEvent, _: &Envelope<'_>) {
        match event {
            EntitlementEvent::ThresholdReached {
                workspace_id,
                feature,
                threshold,
                used,
                limit,
                period_start,
            } => {
                *view = ThresholdData {
                    workspace_id: workspace_id.clone(),
                    feature: feature.as_str().to_string(),
                    threshold: *threshold,
                    used: *used,
                    limit: *limit,
                    period: period_start.format("%Y-%m").to_string(),
                    reset_at: (feature.period() == Period::Monthly)
                        .then(|| timestamp(next_month(*period_start))),
                };
            }
        }
    }
}

/// Recorded usage, pixel events and SEO reports are internal facts: they feed usage and
/// read models and stay in the audit log, but are not sent to webhooks (a busy site's
/// pageviews would drown its receivers).
macro_rules! internal {
    ($($aggregate:ty, $event:ty;)*) => {$(
        impl Published for $aggregate {
            type View = ();

            fn public_type(_: &$event) -> Option<&'static str> {
                None
            }

            fn fold(_: &mut (), _: &$event, _: &Envelope<'_>) {}
        }
    )*};
}

internal! {
    UsageRecord, UsageEvent;
    PixelEvent, PixelEventEvent;
    SeoReport, SeoEvent;
}

// Workspace data ---------------------------------------------------------------------------

/// A record (project, task, ...), as `<resource>.*` events carry it: its fields and
/// what every item has.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordData<F> {
    #[serde(flatten)]
    pub fields: F,
    pub id: String,
    pub workspace_id: String,
    pub created_by: Option<ActorRef>,
    pub created_at: String,
    pub updated_at: String,
    pub version: i64,
    /// On `<resource>.updated`: the names of the fields that changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<Vec<String>>,
    /// Present and `true` on `<resource>.deleted`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// The fold of a record stream: nothing before its creation.
#[derive(Debug)]
pub struct RecordView<F>(Option<RecordData<F>>);

impl<F> Default for RecordView<F> {
    fn default() -> Self {
        Self(None)
    }
}

impl<F: Serialize> Serialize for RecordView<F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<K: RecordKind> Published for Record<K> {
    type View = RecordView<K::Fields>;

    fn public_type(event: &RecordEvent<K>) -> Option<&'static str> {
        let verb = match event {
            RecordEvent::Created { .. } => ".created",
            RecordEvent::Updated { .. } => ".updated",
            RecordEvent::Deleted { .. } => ".deleted",
        };
        RECORD_TYPES
            .iter()
            .find(|t| t.resource == PublicResource::Record(K::TYPE) && t.name.ends_with(verb))
            .map(|t| t.name)
    }

    fn fold(view: &mut RecordView<K::Fields>, event: &RecordEvent<K>, envelope: &Envelope<'_>) {
        match event {
            RecordEvent::Created {
                workspace_id,
                fields,
                created_by,
            } => {
                view.0 = Some(RecordData {
                    fields: fields.clone(),
                    id: envelope.aggregate_id.to_string(),
                    workspace_id: workspace_id.clone(),
                    created_by: Some(ActorRef::from(created_by)),
                    created_at: envelope.at(),
                    updated_at: envelope.at(),
                    version: envelope.sequence,
                    changed: None,
                    deleted: false,
                });
            }
            RecordEvent::Updated {
                fields, changed, ..
            } => {
                if let Some(data) = &mut view.0 {
                    data.fields = fields.clone();
                    data.updated_at = envelope.at();
                    data.version = envelope.sequence;
                    data.changed = Some(changed.clone());
                }
            }
            RecordEvent::Deleted { .. } => {
                if let Some(data) = &mut view.0 {
                    data.updated_at = envelope.at();
                    data.version = envelope.sequence;
                    data.changed = None;
                    data.deleted = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::api_key::ApiKeySettings;
    use crate::workspace_data::{Project, ProjectFields, ProjectStatus};

    fn envelope<'a>(aggregate_type: &'a str, id: &'a str, sequence: i64) -> Envelope<'a> {
        Envelope {
            aggregate_type,
            aggregate_id: id,
            sequence,
            recorded_at: Utc
                .with_ymd_and_hms(2026, 12, 1, 10, 0, sequence as u32)
                .unwrap(),
            actor: Actor::user("usr_1"),
            workspace_id: Some("ws_1"),
        }
    }

    /// One of every internal event variant: a new variant fails to compile in the
    /// `Published` impls until it is mapped, and this list makes each one published or
    /// deliberately internal.
    fn every_variant() -> Vec<(&'static str, Option<&'static str>)> {
        let settings = ApiKeySettings {
            name: "k".into(),
            scopes: vec!["*".into()],
            ip_allowlist: vec![],
            expires_at: None,
            max_age_days: None,
            rate_limit_tier: None,
        };
        let mut out = vec![(
            "UserRegistered",
            User::public_type(&UserEvent::UserRegistered {
                email: "a@b.co".into(),
                name: None,
            }),
        )];
        for event in [
            WorkspaceEvent::WorkspaceCreated {
                name: "n".into(),
                slug: "s".into(),
                tier: Tier::Free,
                settings: WorkspaceSettings::default(),
                pixel_id: "px".into(),
                owner_id: "usr_1".into(),
            },
            WorkspaceEvent::WorkspaceUpdated {
                name: "n".into(),
                settings: WorkspaceSettings::default(),
                changed: vec![],
            },
            WorkspaceEvent::WorkspaceTierChanged {
                tier: Tier::Pro,
                previous_tier: Tier::Free,
            },
            WorkspaceEvent::WorkspaceDeleted,
            WorkspaceEvent::MemberAdded {
                user_id: "u".into(),
                role: Role::Member,
            },
            WorkspaceEvent::MemberRoleChanged {
                user_id: "u".into(),
                role: Role::Admin,
                previous_role: Role::Member,
            },
            WorkspaceEvent::MemberRemoved {
                user_id: "u".into(),
                role: Role::Admin,
            },
        ] {
            out.push(("workspace", Workspace::public_type(&event)));
        }
        for event in [
            ApiKeyEvent::ApiKeyCreated {
                workspace_id: "ws_1".into(),
                public_id: "p".into(),
                prefix: "p".into(),
                masked: "m".into(),
                settings: settings.clone(),
                created_by: Actor::user("usr_1"),
                rotated_from: None,
            },
            ApiKeyEvent::ApiKeyUpdated {
                settings,
                changed: vec![],
            },
            ApiKeyEvent::ApiKeyRotated {
                replaced_by: "key_2".into(),
                grace_period_ends_at: Utc::now(),
            },
            ApiKeyEvent::ApiKeyRevoked,
            ApiKeyEvent::ApiKeyExpiredByRotation,
        ] {
            out.push(("api key", ApiKey::public_type(&event)));
        }
        fn record<K: RecordKind>(out: &mut Vec<(&'static str, Option<&'static str>)>) {
            let fields: K::Fields = serde_json::from_value(json!({
                "name": "n", "title": "t", "project_id": "proj_00000000000000000000000000000001"
            }))
            .or_else(|_| serde_json::from_value(json!({"name": "n"})))
            .or_else(|_| serde_json::from_value(json!({"title": "t"})))
            .or_else(|_| {
                serde_json::from_value(
                    json!({"title": "t", "project_id": "proj_00000000000000000000000000000001"}),
                )
            })
            .expect("minimal fields of every kind");
            for event in [
                RecordEvent::<K>::Created {
                    workspace_id: "ws_1".into(),
                    fields: fields.clone(),
                    created_by: Actor::user("usr_1"),
                },
                RecordEvent::<K>::Updated {
                    workspace_id: "ws_1".into(),
                    fields,
                    changed: vec![],
                },
                RecordEvent::<K>::Deleted {
                    workspace_id: "ws_1".into(),
                },
            ] {
                out.push((K::TYPE, Record::<K>::public_type(&event)));
            }
        }
        record::<ProjectKind>(&mut out);
        record::<TaskKind>(&mut out);
        record::<ContactKind>(&mut out);
        record::<CompanyKind>(&mut out);
        record::<DealKind>(&mut out);
        record::<DocumentKind>(&mut out);
        let webhook = crate::webhook::WebhookSettings {
            url: "https://example.com/hook".into(),
            events: vec!["*".into()],
            description: None,
            rate_limit: None,
        };
        for event in [
            WebhookEvent::WebhookCreated {
                workspace_id: "ws_1".into(),
                settings: webhook.clone(),
                secret_fingerprint: "fp".into(),
                created_by: Actor::user("usr_1"),
            },
            WebhookEvent::WebhookUpdated {
                settings: webhook,
                is_active: true,
                changed: vec![],
            },
            WebhookEvent::WebhookSecretRotated {
                secret_fingerprint: "fp".into(),
                previous_valid_until: Utc::now(),
            },
            WebhookEvent::WebhookDisabled {
                reason: "gone".into(),
            },
            WebhookEvent::WebhookDeleted,
        ] {
            let what = if matches!(event, WebhookEvent::WebhookDisabled { .. }) {
                "webhook disabled"
            } else {
                "webhook configuration"
            };
            out.push((what, Webhook::public_type(&event)));
        }
        assert_eq!(out.len(), 1 + 7 + 5 + 18 + 5);
        out
    }

    #[test]
    fn every_event_is_mapped_to_a_catalog_type_or_deliberately_internal() {
        for (what, public) in every_variant() {
            match public {
                Some(name) => assert!(
                    event_type(name).is_some(),
                    "{what}: {name} not in the catalog"
                ),
                None => assert!(
                    matches!(what, "UserRegistered" | "webhook configuration"),
                    "only user registration and webhook configuration are internal, not {what}"
                ),
            }
        }
        // Names are unique and of the `<resource>.<verb>` form.
        let names: BTreeSet<&str> = event_types().map(|t| t.name).collect();
        assert_eq!(names.len(), event_types().count());
        assert!(names.iter().all(|n| n.split('.').count() == 2));
    }

    #[test]
    fn a_record_stream_publishes_the_resource_after_each_change() {
        let fields = |name: &str| ProjectFields {
            name: name.into(),
            description: None,
            status: ProjectStatus::Active,
            owner_id: None,
            tags: vec!["web".into()],
        };
        let id = "proj_1";
        let published = publish::<Project>([
            (
                RecordEvent::Created {
                    workspace_id: "ws_1".into(),
                    fields: fields("Site"),
                    created_by: Actor::user("usr_1"),
                },
                envelope("Project", id, 1),
            ),
            (
                RecordEvent::Updated {
                    workspace_id: "ws_1".into(),
                    fields: fields("Site 2"),
                    changed: vec!["name".into()],
                },
                envelope("Project", id, 2),
            ),
            (
                RecordEvent::Deleted {
                    workspace_id: "ws_1".into(),
                },
                envelope("Project", id, 3),
            ),
        ]);
        let published: Vec<PublicEvent> = published.into_iter().flatten().collect();
        assert_eq!(
            published.iter().map(|e| e.event_type).collect::<Vec<_>>(),
            ["projects.created", "projects.updated", "projects.deleted"]
        );
        assert_eq!(
            published[1].data,
            json!({"id": "proj_1", "workspace_id": "ws_1", "name": "Site 2", "description": null,
                   "status": "active", "owner_id": null, "tags": ["web"],
                   "created_by": {"type": "user", "id": "usr_1"},
                   "created_at": "2026-12-01T10:00:01.000Z", "updated_at": "2026-12-01T10:00:02.000Z",
                   "version": 2, "changed": ["name"]})
        );
        assert_eq!(published[2].data["deleted"], true);
        assert_eq!(published[2].data["name"], "Site 2", "its last state");
        // Ids are stable per stored event and distinct between events.
        assert_eq!(published[0].id, envelope("Project", id, 1).event_id());
        assert_ne!(published[0].id, published[1].id);
        assert_eq!(published[0].workspace_id.as_deref(), Some("ws_1"));
    }

    #[test]
    fn key_and_member_payloads_never_carry_secrets_and_follow_the_status() {
        let key = "key_1";
        let settings = ApiKeySettings {
            name: "CI".into(),
            scopes: vec!["projects:read".into()],
            ip_allowlist: vec![],
            expires_at: None,
            max_age_days: None,
            rate_limit_tier: None,
        };
        let published: Vec<PublicEvent> = publish::<ApiKey>([
            (
                ApiKeyEvent::ApiKeyCreated {
                    workspace_id: "ws_1".into(),
                    public_id: "psk_public".into(),
                    prefix: "psk_publ".into(),
                    masked: "psk_publ…abcd".into(),
                    settings,
                    created_by: Actor::user("usr_1"),
                    rotated_from: None,
                },
                envelope("ApiKey", key, 1),
            ),
            (
                ApiKeyEvent::ApiKeyRotated {
                    replaced_by: "key_2".into(),
                    grace_period_ends_at: Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap(),
                },
                envelope("ApiKey", key, 2),
            ),
            (ApiKeyEvent::ApiKeyRevoked, envelope("ApiKey", key, 3)),
        ])
        .into_iter()
        .flatten()
        .collect();
        let statuses: Vec<&Value> = published.iter().map(|e| &e.data["status"]).collect();
        assert_eq!(
            statuses,
            [&json!("active"), &json!("rotating"), &json!("revoked")]
        );
        assert_eq!(published[1].data["replaced_by"], "key_2");
        let text = serde_json::to_string(&published).expect("json");
        assert!(
            !text.contains("psk_public\""),
            "the public id is not shown, only prefix and mask"
        );
        assert!(!text.contains("secret"));

        let members: Vec<PublicEvent> = publish::<Workspace>([
            (
                WorkspaceEvent::WorkspaceCreated {
                    name: "Acme".into(),
                    slug: "acme".into(),
                    tier: Tier::Free,
                    settings: WorkspaceSettings::default(),
                    pixel_id: "px_1".into(),
                    owner_id: "usr_1".into(),
                },
                envelope("Workspace", "ws_1", 1),
            ),
            (
                WorkspaceEvent::MemberRoleChanged {
                    user_id: "usr_2".into(),
                    role: Role::Admin,
                    previous_role: Role::Viewer,
                },
                envelope("Workspace", "ws_1", 2),
            ),
            (
                WorkspaceEvent::WorkspaceTierChanged {
                    tier: Tier::Pro,
                    previous_tier: Tier::Free,
                },
                envelope("Workspace", "ws_1", 3),
            ),
        ])
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(
            members[1].data,
            json!({"workspace_id": "ws_1", "user_id": "usr_2", "role": "admin", "previous_role": "viewer"})
        );
        assert_eq!(members[2].event_type, "workspaces.updated");
        assert_eq!(members[2].data["tier"], "pro");
        assert_eq!(members[2].data["version"], 3);
    }
}
