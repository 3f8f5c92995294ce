//! The `Webhook` aggregate: an endpoint a workspace receives its events at.
//!
//! It records where (the URL), what (event types and wildcards from the public catalog),
//! how fast (an optional rate limit, deliveries per second) and whether it is active. Its
//! signing secret never enters an event: it is stored encrypted beside the log, and
//! events carry only its fingerprint (the first bytes of its SHA-256), so an audit can
//! tell secrets apart without holding one.
//!
//! Rules: a URL must be http(s) and name a host; the endpoint answers only commands from
//! its own workspace; a disabled endpoint records why, and turning it active again
//! clears the reason.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::catalog;
use crate::error::{DomainError, ValidationErrors};
use crate::metadata::Actor;
use crate::validate;

/// Most event patterns on one endpoint.
pub const MAX_EVENTS: usize = 50;
/// Longest URL.
pub const MAX_URL: usize = 2048;
/// Bounds of `rate_limit` (deliveries per second).
pub const MAX_RATE_LIMIT: u32 = 10_000;
/// Longest grace period of a secret rotation, in hours.
pub const MAX_GRACE_HOURS: u32 = 168;

/// What an endpoint is, as its events state it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSettings {
    pub url: String,
    /// Event types or wildcards: `projects.updated`, `projects.*`, `*`.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// Deliveries per second at most; `None` for no limit.
    pub rate_limit: Option<u32>,
}

/// A partial change; `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<Option<String>>,
    pub rate_limit: Option<Option<u32>>,
    pub is_active: Option<bool>,
}

/// Whether `pattern` (an event type, `resource.*` or `*`) matches public type `event_type`.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    pattern == "*"
        || pattern == event_type
        || pattern.strip_suffix(".*").is_some_and(|resource| {
            event_type
                .split_once('.')
                .is_some_and(|(r, _)| r == resource)
        })
}

/// Whether `pattern` can match anything in the catalog.
pub fn known_pattern(pattern: &str) -> bool {
    catalog::event_types().any(|t| matches(pattern, t.name))
}

/// A URL an endpoint may have: `http(s)://host…`, at most [`MAX_URL`] long, no user info.
/// (Whether the host may be reached is the dispatcher's decision, at connect time.)
pub fn check_url(value: &str) -> Result<url::Url, String> {
    let message = || "The url must be an http or https URL with a host.".to_string();
    if value.len() > MAX_URL {
        return Err(format!(
            "The url may not be longer than {MAX_URL} characters."
        ));
    }
    let url = url::Url::parse(value).map_err(|_| message())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(message());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("The url may not carry credentials.".into());
    }
    Ok(url)
}

/// Trims, drops repeated patterns (lists over the limit are left for validation).
pub fn normalize_settings(settings: &mut WebhookSettings) {
    settings.url = settings.url.trim().to_string();
    settings.description = settings
        .description
        .take()
        .map(|d| d.trim().to_string())
        .filter(|d| !d.is_empty());
    if settings.events.len() <= MAX_EVENTS {
        let mut seen = std::collections::HashSet::new();
        settings.events = std::mem::take(&mut settings.events)
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| seen.insert(e.clone()))
            .collect();
    }
}

/// Field rules of an endpoint's settings.
pub fn validate_settings(settings: &WebhookSettings) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    if let Err(message) = check_url(&settings.url) {
        errors.add("url", message);
    }
    if settings.events.is_empty() {
        errors.add("events", "Subscribe to at least one event type (or `*`).");
    } else if settings.events.len() > MAX_EVENTS {
        errors.add("events", format!("At most {MAX_EVENTS} event types."));
    } else {
        for (i, pattern) in settings.events.iter().enumerate() {
            if !known_pattern(pattern) {
                errors.add(
                    format!("events.{i}"),
                    format!("`{pattern}` matches no event type; see GET /event-types."),
                );
            }
        }
    }
    if let Some(description) = &settings.description {
        errors.check(
            "description",
            validate::optional_text("description", description, 500),
        );
    }
    if let Some(limit) = settings.rate_limit {
        if !(1..=MAX_RATE_LIMIT).contains(&limit) {
            errors.add(
                "rate_limit",
                format!("The rate_limit must be from 1 to {MAX_RATE_LIMIT} per second."),
            );
        }
    }
    errors
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Webhook {
    created: bool,
    deleted: bool,
    workspace_id: String,
    settings: Option<WebhookSettings>,
    active: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookCommand {
    CreateWebhook {
        workspace_id: String,
        settings: WebhookSettings,
        /// Of the secret stored beside the log.
        secret_fingerprint: String,
        created_by: Actor,
    },
    UpdateWebhook {
        workspace_id: String,
        patch: WebhookPatch,
    },
    RotateWebhookSecret {
        workspace_id: String,
        secret_fingerprint: String,
        /// Until when the previous secret still signs.
        previous_valid_until: DateTime<Utc>,
    },
    /// The dispatcher gave up on the endpoint (410 Gone, or no success for too long).
    DisableWebhook {
        reason: String,
    },
    DeleteWebhook {
        workspace_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEvent {
    WebhookCreated {
        workspace_id: String,
        settings: WebhookSettings,
        secret_fingerprint: String,
        created_by: Actor,
    },
    /// The resulting settings and activity, and which fields changed.
    WebhookUpdated {
        settings: WebhookSettings,
        is_active: bool,
        changed: Vec<String>,
    },
    WebhookSecretRotated {
        secret_fingerprint: String,
        previous_valid_until: DateTime<Utc>,
    },
    WebhookDisabled {
        reason: String,
    },
    WebhookDeleted,
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WebhookCreated { .. } => "WebhookCreated",
            Self::WebhookUpdated { .. } => "WebhookUpdated",
            Self::WebhookSecretRotated { .. } => "WebhookSecretRotated",
            Self::WebhookDisabled { .. } => "WebhookDisabled",
            Self::WebhookDeleted => "WebhookDeleted",
        }
        .into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl Webhook {
    fn live(&self, workspace_id: &str) -> Result<&WebhookSettings, DomainError> {
        match &self.settings {
            Some(settings)
                if self.created && !self.deleted && self.workspace_id == workspace_id =>
            {
                Ok(settings)
            }
            _ => Err(DomainError::NotFound("webhook")),
        }
    }

    /// Whether deliveries are made to it.
    pub fn is_active(&self) -> bool {
        self.created && !self.deleted && self.active
    }
}

impl crate::Tenanted for Webhook {
    fn tenant(&self, _: &str) -> Option<String> {
        self.created.then(|| self.workspace_id.clone())
    }
}

impl Aggregate for Webhook {
    const TYPE: &'static str = "Webhook";
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WebhookCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            WebhookCommand::CreateWebhook {
                workspace_id,
                mut settings,
                secret_fingerprint,
                created_by,
            } => {
                if self.created {
                    return Err(DomainError::AlreadyExists("webhook"));
                }
                normalize_settings(&mut settings);
                validate_settings(&settings).into_result()?;
                sink.write(
                    WebhookEvent::WebhookCreated {
                        workspace_id,
                        settings,
                        secret_fingerprint,
                        created_by,
                    },
                    self,
                )
                .await;
            }
            WebhookCommand::UpdateWebhook {
                workspace_id,
                patch,
            } => {
                let current = self.live(&workspace_id)?.clone();
                let mut next = current.clone();
                if let Some(url) = patch.url {
                    next.url = url;
                }
                if let Some(events) = patch.events {
                    next.events = events;
                }
                if let Some(description) = patch.description {
                    next.description = description;
                }
                if let Some(rate_limit) = patch.rate_limit {
                    next.rate_limit = rate_limit;
                }
                normalize_settings(&mut next);
                validate_settings(&next).into_result()?;
                let active = patch.is_active.unwrap_or(self.active);
                let changed: Vec<String> = [
                    ("url", next.url != current.url),
                    ("events", next.events != current.events),
                    ("description", next.description != current.description),
                    ("rate_limit", next.rate_limit != current.rate_limit),
                    ("is_active", active != self.active),
                ]
                .into_iter()
                .filter(|(_, changed)| *changed)
                .map(|(field, _)| field.to_string())
                .collect();
                if !changed.is_empty() {
                    sink.write(
                        WebhookEvent::WebhookUpdated {
                            settings: next,
                            is_active: active,
                            changed,
                        },
                        self,
                    )
                    .await;
                }
            }
            WebhookCommand::RotateWebhookSecret {
                workspace_id,
                secret_fingerprint,
                previous_valid_until,
            } => {
                self.live(&workspace_id)?;
                sink.write(
                    WebhookEvent::WebhookSecretRotated {
                        secret_fingerprint,
                        previous_valid_until,
                    },
                    self,
                )
                .await;
            }
            WebhookCommand::DisableWebhook { reason } => {
                let workspace_id = self.workspace_id.clone();
                self.live(&workspace_id)?;
                // Disabling an endpoint that is off already records nothing.
                if self.active {
                    sink.write(WebhookEvent::WebhookDisabled { reason }, self)
                        .await;
                }
            }
            WebhookCommand::DeleteWebhook { workspace_id } => {
                self.live(&workspace_id)?;
                sink.write(WebhookEvent::WebhookDeleted, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: WebhookEvent) {
        match event {
            WebhookEvent::WebhookCreated {
                workspace_id,
                settings,
                ..
            } => {
                self.created = true;
                self.active = true;
                self.workspace_id = workspace_id;
                self.settings = Some(settings);
            }
            WebhookEvent::WebhookUpdated {
                settings,
                is_active,
                ..
            } => {
                self.settings = Some(settings);
                self.active = is_active;
            }
            WebhookEvent::WebhookSecretRotated { .. } => {}
            WebhookEvent::WebhookDisabled { .. } => self.active = false,
            WebhookEvent::WebhookDeleted => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type WebhookTest = TestFramework<Webhook>;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            url: "https://hooks.example.com/pulsar".into(),
            events: vec!["projects.*".into(), "tasks.created".into()],
            description: None,
            rate_limit: None,
        }
    }

    fn created() -> WebhookEvent {
        WebhookEvent::WebhookCreated {
            workspace_id: "ws_1".into(),
            settings: settings(),
            secret_fingerprint: "fp".into(),
            created_by: Actor::user("usr_1"),
        }
    }

    #[test]
    fn patterns_match_types_and_wildcards() {
        assert!(matches("*", "projects.created"));
        assert!(matches("projects.*", "projects.deleted"));
        assert!(matches("projects.created", "projects.created"));
        assert!(!matches("projects.*", "tasks.created"));
        assert!(!matches("project.*", "projects.created"));
        assert!(!matches("projects.created", "projects.updated"));
        assert!(known_pattern("api_keys.*"));
        assert!(!known_pattern("nothing.*"));
        assert!(!known_pattern("projects.exploded"));
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        assert!(check_url("https://example.com/hook?x=1").is_ok());
        assert!(
            check_url("http://127.0.0.1:8080/").is_ok(),
            "reachability is decided later"
        );
        for bad in [
            "ftp://example.com",
            "https://",
            "not a url",
            "https://u:p@example.com/",
            "javascript:alert(1)",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[tokio::test]
    async fn creation_normalises_and_validates() {
        let mut messy = settings();
        messy.url = "  https://hooks.example.com/pulsar ".into();
        messy.events = vec![
            "projects.*".into(),
            " projects.* ".into(),
            "tasks.created".into(),
        ];
        WebhookTest::with(())
            .given_no_previous_events()
            .when_async(WebhookCommand::CreateWebhook {
                workspace_id: "ws_1".into(),
                settings: messy,
                secret_fingerprint: "fp".into(),
                created_by: Actor::user("usr_1"),
            })
            .await
            .then_expect_events(vec![created()]);
        let bad = WebhookSettings {
            url: "ftp://x".into(),
            events: vec!["nope.*".into()],
            description: None,
            rate_limit: Some(0),
        };
        let result = WebhookTest::with(())
            .given_no_previous_events()
            .when_async(WebhookCommand::CreateWebhook {
                workspace_id: "ws_1".into(),
                settings: bad,
                secret_fingerprint: "fp".into(),
                created_by: Actor::user("usr_1"),
            })
            .await
            .inspect_result();
        let Err(DomainError::Validation(errors)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(
            errors.fields().keys().collect::<Vec<_>>(),
            ["events.0", "rate_limit", "url"]
        );
    }

    #[tokio::test]
    async fn another_workspace_cannot_touch_it_and_disabling_is_recorded_once() {
        WebhookTest::with(())
            .given(vec![created()])
            .when_async(WebhookCommand::DeleteWebhook {
                workspace_id: "ws_2".into(),
            })
            .await
            .then_expect_error(DomainError::NotFound("webhook"));
        WebhookTest::with(())
            .given(vec![created()])
            .when_async(WebhookCommand::DisableWebhook {
                reason: "410 Gone".into(),
            })
            .await
            .then_expect_events(vec![WebhookEvent::WebhookDisabled {
                reason: "410 Gone".into(),
            }]);
        WebhookTest::with(())
            .given(vec![
                created(),
                WebhookEvent::WebhookDisabled {
                    reason: "410 Gone".into(),
                },
            ])
            .when_async(WebhookCommand::DisableWebhook {
                reason: "again".into(),
            })
            .await
            .then_expect_events(vec![]);
        // Turning it on again is a change like any other.
        WebhookTest::with(())
            .given(vec![
                created(),
                WebhookEvent::WebhookDisabled {
                    reason: "410 Gone".into(),
                },
            ])
            .when_async(WebhookCommand::UpdateWebhook {
                workspace_id: "ws_1".into(),
                patch: WebhookPatch {
                    is_active: Some(true),
                    ..WebhookPatch::default()
                },
            })
            .await
            .then_expect_events(vec![WebhookEvent::WebhookUpdated {
                settings: settings(),
                is_active: true,
                changed: vec!["is_active".into()],
            }]);
    }
}
