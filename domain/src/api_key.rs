//! The `ApiKey` aggregate: a workspace's credential for integrations.
//!
//! The secret never enters an event, not even hashed: its SHA-256 lives in the
//! write-side `api_key_secrets` table. Events carry everything the key table, the read
//! model and the audit trail need: scopes, allowlist, expiry, age policy, tier, who made
//! it, and what replaced it.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ValidationErrors};
use crate::metadata::Actor;
use crate::scopes::{Scope, ScopeSet};
use crate::validate;
use crate::workspace::Tier;

/// Longest rotation grace period, in hours.
pub const MAX_GRACE_HOURS: u32 = 168;
/// Bounds of `max_age_days`.
pub const MAX_AGE_DAYS: u32 = 3650;
/// Most allowlist entries on one key.
pub const MAX_ALLOWLIST: usize = 100;
/// Most scopes on one key (the catalog has fewer distinct ones than this).
pub const MAX_SCOPES: usize = 64;

/// Drops repeated entries, keeping the first of each in the order given.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    values
        .into_iter()
        .filter(|value| seen.insert(value.clone()))
        .collect()
}

/// Trims the name and allowlist entries and drops repeated scopes and entries, so what
/// is stored and counted is what the key means. Lists over their limit are left as
/// sent, for [`validate_settings`] to refuse before any work that grows with them.
pub fn normalize_settings(settings: &mut ApiKeySettings) {
    settings.name = settings.name.trim().to_string();
    if settings.scopes.len() <= MAX_SCOPES {
        settings.scopes = dedup(std::mem::take(&mut settings.scopes));
    }
    if settings.ip_allowlist.len() <= MAX_ALLOWLIST {
        settings.ip_allowlist = dedup(
            settings
                .ip_allowlist
                .iter()
                .map(|e| e.trim().to_string())
                .collect(),
        );
    }
}

/// What a key may do and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeySettings {
    pub name: String,
    pub scopes: Vec<String>,
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub max_age_days: Option<u32>,
    /// `None`: the workspace's tier.
    pub rate_limit_tier: Option<Tier>,
}

/// A partial change; `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiKeyPatch {
    pub name: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub ip_allowlist: Option<Vec<String>>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub max_age_days: Option<Option<u32>>,
    pub rate_limit_tier: Option<Option<Tier>>,
}

/// Parses allowlist entries (exact IPs or CIDR ranges, v4 or v6).
pub fn parse_allowlist<S: AsRef<str>>(entries: &[S]) -> Result<Vec<IpNet>, (usize, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let entry = entry.as_ref().trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| (i, format!("`{entry}` is not an IP address or CIDR range.")))
        })
        .collect()
}

/// Validates settings against the grantor's own scopes (a key can never hold more than
/// whoever made it) and the clock.
pub fn validate_settings(
    settings: &ApiKeySettings,
    grantor: ScopeSet,
    now: DateTime<Utc>,
) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    errors.check("name", validate::required_text("name", &settings.name, 100));
    if settings.scopes.is_empty() {
        errors.add("scopes", "A key needs at least one scope.");
    }
    if settings.scopes.len() > MAX_SCOPES {
        errors.add("scopes", format!("At most {MAX_SCOPES} scopes."));
    }
    for (i, scope) in settings.scopes.iter().enumerate().take(MAX_SCOPES) {
        match scope.parse::<Scope>() {
            Err(_) => errors.add(format!("scopes.{i}"), format!("Unknown scope `{scope}`.")),
            Ok(parsed) => {
                let wanted = ScopeSet::EMPTY.with(parsed);
                if !grantor.contains(wanted) {
                    errors.add(
                        format!("scopes.{i}"),
                        format!("You cannot grant `{scope}`: it exceeds your own scopes."),
                    );
                }
            }
        }
    }
    if settings.ip_allowlist.len() > MAX_ALLOWLIST {
        errors.add("ip_allowlist", format!("At most {MAX_ALLOWLIST} entries."));
    } else {
        for (i, entry) in settings.ip_allowlist.iter().enumerate() {
            if let Err((_, message)) = parse_allowlist(std::slice::from_ref(entry)) {
                errors.add(format!("ip_allowlist.{i}"), message);
            }
        }
    }
    if let Some(expires_at) = settings.expires_at {
        if expires_at <= now {
            errors.add("expires_at", "The expiry must be in the future.");
        }
    }
    if let Some(days) = settings.max_age_days {
        if !(1..=MAX_AGE_DAYS).contains(&days) {
            errors.add(
                "max_age_days",
                format!("The max age must be from 1 to {MAX_AGE_DAYS} days."),
            );
        }
    }
    errors
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ApiKey {
    created: bool,
    /// The workspace the key belongs to; commands naming another are "not found".
    #[serde(default)]
    workspace_id: String,
    settings: Option<ApiKeySettings>,
    revoked: bool,
    grace_period_ends_at: Option<DateTime<Utc>>,
    expired_by_rotation: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    CreateApiKey {
        workspace_id: String,
        public_id: String,
        prefix: String,
        masked: String,
        settings: ApiKeySettings,
        created_by: Actor,
        rotated_from: Option<String>,
        /// The scopes of whoever creates the key.
        grantor: ScopeSet,
        now: DateTime<Utc>,
    },
    UpdateApiKey {
        /// The workspace the caller acts in.
        workspace_id: String,
        patch: ApiKeyPatch,
        grantor: ScopeSet,
        now: DateTime<Utc>,
    },
    RotateApiKey {
        workspace_id: String,
        replaced_by: String,
        grace_period_hours: u32,
        /// The scopes of whoever rotates: a rotation hands out a new secret with the
        /// key's powers, so only to someone who holds them all already.
        rotator: ScopeSet,
        now: DateTime<Utc>,
    },
    RevokeApiKey {
        workspace_id: String,
    },
    /// The rotation grace period ended: record that the old key stopped.
    ExpireRotatedKey {
        now: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        workspace_id: String,
        public_id: String,
        prefix: String,
        masked: String,
        settings: ApiKeySettings,
        created_by: Actor,
        rotated_from: Option<String>,
    },
    /// Carries the resulting settings and which fields changed.
    ApiKeyUpdated {
        settings: ApiKeySettings,
        changed: Vec<String>,
    },
    ApiKeyRotated {
        replaced_by: String,
        grace_period_ends_at: DateTime<Utc>,
    },
    ApiKeyRevoked,
    ApiKeyExpiredByRotation,
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ApiKeyCreated { .. } => "ApiKeyCreated",
            Self::ApiKeyUpdated { .. } => "ApiKeyUpdated",
            Self::ApiKeyRotated { .. } => "ApiKeyRotated",
            Self::ApiKeyRevoked => "ApiKeyRevoked",
            Self::ApiKeyExpiredByRotation => "ApiKeyExpiredByRotation",
        }
        .into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl ApiKey {
    /// The key as seen from `workspace_id`: another workspace's key does not exist there.
    fn in_workspace(&self, workspace_id: &str) -> Result<(), DomainError> {
        if self.created && self.workspace_id == workspace_id {
            Ok(())
        } else {
            Err(DomainError::NotFound("api key"))
        }
    }

    /// The workspace this key belongs to (once created).
    pub fn workspace_id(&self) -> Option<&str> {
        self.created.then_some(self.workspace_id.as_str())
    }

    /// Whether `rotator` may rotate this key: it must hold every scope the key has,
    /// since the rotation hands out a new secret with those powers.
    pub fn may_rotate(&self, rotator: ScopeSet) -> Result<(), DomainError> {
        let settings = self.settings()?;
        // Scopes were validated when stored; should one fail to parse, it counts as all.
        let powers = ScopeSet::parse(&settings.scopes).unwrap_or(ScopeSet::ALL);
        if rotator.contains(powers) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "You cannot rotate a key whose scopes exceed your own.".into(),
            ))
        }
    }

    fn settings(&self) -> Result<&ApiKeySettings, DomainError> {
        match &self.settings {
            Some(settings) if self.created && !self.revoked => Ok(settings),
            _ => Err(DomainError::NotFound("api key")),
        }
    }

    fn usable(&self, now: DateTime<Utc>) -> Result<&ApiKeySettings, DomainError> {
        let settings = self.settings()?;
        if self.expired_by_rotation || self.grace_period_ends_at.is_some_and(|end| end <= now) {
            return Err(DomainError::Conflict(
                "This key was rotated and has expired.".into(),
            ));
        }
        if settings.expires_at.is_some_and(|at| at <= now) {
            return Err(DomainError::Conflict("This key has expired.".into()));
        }
        Ok(settings)
    }

    pub fn current_settings(&self) -> Option<&ApiKeySettings> {
        self.settings
            .as_ref()
            .filter(|_| self.created && !self.revoked)
    }
}

impl Aggregate for ApiKey {
    const TYPE: &'static str = "ApiKey";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ApiKeyCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ApiKeyCommand::CreateApiKey {
                workspace_id,
                public_id,
                prefix,
                masked,
                mut settings,
                created_by,
                rotated_from,
                grantor,
                now,
            } => {
                if self.created {
                    return Err(DomainError::AlreadyExists("api key"));
                }
                normalize_settings(&mut settings);
                validate_settings(&settings, grantor, now).into_result()?;
                sink.write(
                    ApiKeyEvent::ApiKeyCreated {
                        workspace_id,
                        public_id,
                        prefix,
                        masked,
                        settings,
                        created_by,
                        rotated_from,
                    },
                    self,
                )
                .await;
            }
            ApiKeyCommand::UpdateApiKey {
                workspace_id,
                patch,
                grantor,
                now,
            } => {
                self.in_workspace(&workspace_id)?;
                let current = self.usable(now)?.clone();
                let mut next = current.clone();
                if let Some(name) = patch.name {
                    next.name = name;
                }
                if let Some(scopes) = patch.scopes {
                    next.scopes = scopes;
                }
                if let Some(list) = patch.ip_allowlist {
                    next.ip_allowlist = list;
                }
                if let Some(expires_at) = patch.expires_at {
                    next.expires_at = expires_at;
                }
                if let Some(days) = patch.max_age_days {
                    next.max_age_days = days;
                }
                if let Some(tier) = patch.rate_limit_tier {
                    next.rate_limit_tier = tier;
                }
                normalize_settings(&mut next);
                let mut errors = validate_settings(&next, grantor, now);
                // An unchanged expiry that has meanwhile passed is not the patch's fault.
                if next.expires_at == current.expires_at {
                    errors = without_field(errors, "expires_at");
                }
                errors.into_result()?;
                let changed: Vec<String> = [
                    ("name", next.name != current.name),
                    ("scopes", next.scopes != current.scopes),
                    ("ip_allowlist", next.ip_allowlist != current.ip_allowlist),
                    ("expires_at", next.expires_at != current.expires_at),
                    ("max_age_days", next.max_age_days != current.max_age_days),
                    (
                        "rate_limit_tier",
                        next.rate_limit_tier != current.rate_limit_tier,
                    ),
                ]
                .into_iter()
                .filter(|(_, changed)| *changed)
                .map(|(field, _)| field.to_string())
                .collect();
                if !changed.is_empty() {
                    sink.write(
                        ApiKeyEvent::ApiKeyUpdated {
                            settings: next,
                            changed,
                        },
                        self,
                    )
                    .await;
                }
            }
            ApiKeyCommand::RotateApiKey {
                workspace_id,
                replaced_by,
                grace_period_hours,
                rotator,
                now,
            } => {
                self.in_workspace(&workspace_id)?;
                if grace_period_hours > MAX_GRACE_HOURS {
                    return Err(ValidationErrors::single(
                        "grace_period_hours",
                        format!("The grace period must be from 0 to {MAX_GRACE_HOURS} hours."),
                    )
                    .into());
                }
                self.usable(now)?;
                self.may_rotate(rotator)?;
                if self.grace_period_ends_at.is_some() {
                    return Err(DomainError::Conflict(
                        "This key is already being rotated.".into(),
                    ));
                }
                sink.write(
                    ApiKeyEvent::ApiKeyRotated {
                        replaced_by,
                        grace_period_ends_at: now + Duration::hours(i64::from(grace_period_hours)),
                    },
                    self,
                )
                .await;
            }
            ApiKeyCommand::RevokeApiKey { workspace_id } => {
                self.in_workspace(&workspace_id)?;
                self.settings()?;
                sink.write(ApiKeyEvent::ApiKeyRevoked, self).await;
            }
            ApiKeyCommand::ExpireRotatedKey { now } => {
                self.settings()?;
                match self.grace_period_ends_at {
                    Some(end) if end <= now && !self.expired_by_rotation => {
                        sink.write(ApiKeyEvent::ApiKeyExpiredByRotation, self).await;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::ApiKeyCreated {
                workspace_id,
                settings,
                ..
            } => {
                self.created = true;
                self.workspace_id = workspace_id;
                self.settings = Some(settings);
            }
            ApiKeyEvent::ApiKeyUpdated { settings, .. } => self.settings = Some(settings),
            ApiKeyEvent::ApiKeyRotated {
                grace_period_ends_at,
                ..
            } => self.grace_period_ends_at = Some(grace_period_ends_at),
            ApiKeyEvent::ApiKeyRevoked => self.revoked = true,
            ApiKeyEvent::ApiKeyExpiredByRotation => self.expired_by_rotation = true,
        }
    }
}

impl crate::Tenanted for ApiKey {
    fn tenant(&self, _: &str) -> Option<String> {
        self.workspace_id().map(str::to_string)
    }
}

fn without_field(errors: ValidationErrors, field: &str) -> ValidationErrors {
    let mut kept = ValidationErrors::new();
    for (name, messages) in errors.fields() {
        if name != field {
            for message in messages {
                kept.add(name.clone(), message.clone());
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type KeyTest = TestFramework<ApiKey>;

    fn now() -> DateTime<Utc> {
        "2026-06-01T12:00:00Z".parse().expect("time")
    }

    fn settings() -> ApiKeySettings {
        ApiKeySettings {
            name: "CI".into(),
            scopes: vec!["projects:read".into()],
            ip_allowlist: vec!["10.0.0.0/8".into(), "2001:db8::1".into()],
            expires_at: None,
            max_age_days: Some(90),
            rate_limit_tier: None,
        }
    }

    fn created() -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyCreated {
            workspace_id: "ws_1".into(),
            public_id: "psk_abc".into(),
            prefix: "psk_abcd".into(),
            masked: "psk_abcd…wxyz".into(),
            settings: settings(),
            created_by: Actor::user("usr_1"),
            rotated_from: None,
        }
    }

    fn create(settings: ApiKeySettings, grantor: ScopeSet) -> ApiKeyCommand {
        ApiKeyCommand::CreateApiKey {
            workspace_id: "ws_1".into(),
            public_id: "psk_abc".into(),
            prefix: "psk_abcd".into(),
            masked: "psk_abcd…wxyz".into(),
            settings,
            created_by: Actor::user("usr_1"),
            rotated_from: None,
            grantor,
            now: now(),
        }
    }

    async fn errors_of(given: Vec<ApiKeyEvent>, command: ApiKeyCommand) -> Vec<String> {
        match KeyTest::with(())
            .given(given)
            .when_async(command)
            .await
            .inspect_result()
        {
            Err(DomainError::Validation(errors)) => errors.fields().keys().cloned().collect(),
            other => panic!("expected validation errors, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn creation_records_settings_but_no_secret() {
        KeyTest::with(())
            .given_no_previous_events()
            .when_async(create(settings(), ScopeSet::ALL))
            .await
            .then_expect_events(vec![created()]);
    }

    #[tokio::test]
    async fn creation_validates_every_field() {
        let bad = ApiKeySettings {
            name: " ".into(),
            scopes: vec!["projects:read".into(), "projects:admin".into()],
            ip_allowlist: vec!["10.0.0.0/33".into(), "::1".into(), "nonsense".into()],
            expires_at: Some(now() - Duration::seconds(1)),
            max_age_days: Some(0),
            rate_limit_tier: None,
        };
        assert_eq!(
            errors_of(vec![], create(bad, ScopeSet::ALL)).await,
            [
                "expires_at",
                "ip_allowlist.0",
                "ip_allowlist.2",
                "max_age_days",
                "name",
                "scopes.1"
            ]
        );
        let empty = ApiKeySettings {
            scopes: vec![],
            ..settings()
        };
        assert_eq!(
            errors_of(vec![], create(empty, ScopeSet::ALL)).await,
            ["scopes"]
        );
    }

    #[tokio::test]
    async fn repeated_scopes_and_entries_are_stored_once_and_oversized_lists_refused() {
        let repeated = ApiKeySettings {
            scopes: vec!["projects:read".to_string(); 50],
            ip_allowlist: vec![" 10.0.0.0/8".into(), "10.0.0.0/8 ".into()],
            ..settings()
        };
        let event = KeyTest::with(())
            .given_no_previous_events()
            .when_async(create(repeated, ScopeSet::ALL))
            .await
            .inspect_result()
            .expect("created");
        let ApiKeyEvent::ApiKeyCreated {
            settings: stored, ..
        } = &event[0]
        else {
            panic!("{event:?}");
        };
        assert_eq!(stored.scopes, ["projects:read"]);
        assert_eq!(stored.ip_allowlist, ["10.0.0.0/8"]);
        // Over the limit, repeats do not rescue the list: refused with one message.
        let flood = ApiKeySettings {
            scopes: vec!["projects:read".to_string(); 5_000],
            ..settings()
        };
        assert_eq!(
            errors_of(vec![], create(flood, ScopeSet::ALL)).await,
            ["scopes"]
        );
    }

    #[tokio::test]
    async fn a_key_cannot_exceed_its_grantor() {
        let grantor = ScopeSet::parse(&["projects:read"]).expect("scopes");
        let wide = ApiKeySettings {
            scopes: vec!["projects:read".into(), "projects:*".into()],
            ..settings()
        };
        assert_eq!(errors_of(vec![], create(wide, grantor)).await, ["scopes.1"]);
    }

    #[tokio::test]
    async fn rotation_grace_is_bounded_and_happens_once() {
        let rotate = |hours| ApiKeyCommand::RotateApiKey {
            workspace_id: "ws_1".into(),
            replaced_by: "key_new".into(),
            grace_period_hours: hours,
            rotator: ScopeSet::ALL,
            now: now(),
        };
        KeyTest::with(())
            .given(vec![created()])
            .when_async(rotate(24))
            .await
            .then_expect_events(vec![ApiKeyEvent::ApiKeyRotated {
                replaced_by: "key_new".into(),
                grace_period_ends_at: now() + Duration::hours(24),
            }]);
        assert_eq!(
            errors_of(vec![created()], rotate(169)).await,
            ["grace_period_hours"]
        );
        let result = KeyTest::with(())
            .given(vec![
                created(),
                ApiKeyEvent::ApiKeyRotated {
                    replaced_by: "key_new".into(),
                    grace_period_ends_at: now() + Duration::hours(1),
                },
            ])
            .when_async(rotate(1))
            .await
            .inspect_result();
        assert!(matches!(result, Err(DomainError::Conflict(_))));
    }

    #[tokio::test]
    async fn revoked_keys_are_gone() {
        KeyTest::with(())
            .given(vec![created(), ApiKeyEvent::ApiKeyRevoked])
            .when_async(ApiKeyCommand::RevokeApiKey {
                workspace_id: "ws_1".into(),
            })
            .await
            .then_expect_error(DomainError::NotFound("api key"));
    }

    #[tokio::test]
    async fn a_key_answers_only_commands_from_its_own_workspace() {
        let other = || "ws_2".to_string();
        for command in [
            ApiKeyCommand::RevokeApiKey {
                workspace_id: other(),
            },
            ApiKeyCommand::UpdateApiKey {
                workspace_id: other(),
                patch: ApiKeyPatch {
                    name: Some("mine now".into()),
                    ..ApiKeyPatch::default()
                },
                grantor: ScopeSet::ALL,
                now: now(),
            },
            ApiKeyCommand::RotateApiKey {
                workspace_id: other(),
                replaced_by: "key_new".into(),
                grace_period_hours: 1,
                rotator: ScopeSet::ALL,
                now: now(),
            },
        ] {
            KeyTest::with(())
                .given(vec![created()])
                .when_async(command)
                .await
                .then_expect_error(DomainError::NotFound("api key"));
        }
    }

    #[tokio::test]
    async fn a_rotation_never_hands_out_powers_the_rotator_lacks() {
        // Given a key with `projects:read`, when someone holding only `tasks:*` rotates
        // it, then nothing happens: the new secret would carry powers they do not have.
        let narrow = ScopeSet::parse(&["tasks:*"]).expect("scopes");
        KeyTest::with(())
            .given(vec![created()])
            .when_async(ApiKeyCommand::RotateApiKey {
                workspace_id: "ws_1".into(),
                replaced_by: "key_new".into(),
                grace_period_hours: 24,
                rotator: narrow,
                now: now(),
            })
            .await
            .then_expect_error(DomainError::Forbidden(
                "You cannot rotate a key whose scopes exceed your own.".into(),
            ));
        // Holding the key's scopes (or more) is enough.
        let enough = ScopeSet::parse(&["projects:*"]).expect("scopes");
        let events = KeyTest::with(())
            .given(vec![created()])
            .when_async(ApiKeyCommand::RotateApiKey {
                workspace_id: "ws_1".into(),
                replaced_by: "key_new".into(),
                grace_period_hours: 24,
                rotator: enough,
                now: now(),
            })
            .await
            .inspect_result()
            .expect("rotated");
        assert_eq!(events.len(), 1);
    }

    #[tokio::test]
    async fn update_records_what_changed() {
        KeyTest::with(())
            .given(vec![created()])
            .when_async(ApiKeyCommand::UpdateApiKey {
                workspace_id: "ws_1".into(),
                patch: ApiKeyPatch {
                    name: Some("CI deploy".into()),
                    max_age_days: Some(None),
                    ..ApiKeyPatch::default()
                },
                grantor: ScopeSet::ALL,
                now: now(),
            })
            .await
            .then_expect_events(vec![ApiKeyEvent::ApiKeyUpdated {
                settings: ApiKeySettings {
                    name: "CI deploy".into(),
                    max_age_days: None,
                    ..settings()
                },
                changed: vec!["name".into(), "max_age_days".into()],
            }]);
    }

    #[tokio::test]
    async fn grace_end_is_recorded_once_when_due() {
        let rotated = ApiKeyEvent::ApiKeyRotated {
            replaced_by: "key_new".into(),
            grace_period_ends_at: now(),
        };
        KeyTest::with(())
            .given(vec![created(), rotated.clone()])
            .when_async(ApiKeyCommand::ExpireRotatedKey { now: now() })
            .await
            .then_expect_events(vec![ApiKeyEvent::ApiKeyExpiredByRotation]);
        KeyTest::with(())
            .given(vec![
                created(),
                rotated,
                ApiKeyEvent::ApiKeyExpiredByRotation,
            ])
            .when_async(ApiKeyCommand::ExpireRotatedKey { now: now() })
            .await
            .then_expect_events(vec![]);
    }

    mod allowlists {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

        use ipnet::IpNet;
        use proptest::prelude::*;

        use super::super::parse_allowlist;

        proptest! {
            /// Every address and every range of both families parses, and a range
            /// contains the address it was written with.
            #[test]
            fn addresses_and_ranges_of_both_families_parse(
                v4 in any::<u32>(), v6 in any::<u128>(), p4 in 0u8..=32, p6 in 0u8..=128,
            ) {
                let v4 = IpAddr::from(Ipv4Addr::from(v4));
                let v6 = IpAddr::from(Ipv6Addr::from(v6));
                let entries = [
                    v4.to_string(), v6.to_string(), format!("{v4}/{p4}"), format!(" {v6}/{p6} "),
                ];
                let parsed = parse_allowlist(&entries).expect("valid entries");
                prop_assert!(parsed[0].contains(&v4) && parsed[1].contains(&v6));
                prop_assert!(parsed[2].contains(&v4) && parsed[3].contains(&v6));
            }

            /// Anything else is refused with the index of the bad entry, never a panic,
            /// and accepted exactly when it is an address or a range.
            #[test]
            fn other_strings_are_refused_by_position(junk in "\\PC{0,40}") {
                let entries = ["10.0.0.0/8".to_string(), junk.clone()];
                let valid = junk.trim().parse::<IpNet>().is_ok() || junk.trim().parse::<IpAddr>().is_ok();
                match parse_allowlist(&entries) {
                    Ok(_) => prop_assert!(valid),
                    Err((index, message)) => {
                        prop_assert!(!valid);
                        prop_assert_eq!(index, 1);
                        prop_assert!(message.contains("not an IP address"));
                    }
                }
            }
        }
    }
}

/// One allowlist entry in the document: an IPv4 address or range, or an IPv6 address
/// (IPv6 ranges are accepted too; JSON Schema has no format for them).
#[cfg(feature = "openapi")]
#[derive(Debug)]
pub struct AllowlistEntry;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for AllowlistEntry {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type,
        };
        const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        "^({OCTET}\\.){{3}}{OCTET}(/(3[0-2]|[12]?[0-9]))?$"
                    ))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Ipv6))),
            )
            .description(Some("An IP address or CIDR range, v4 or v6."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for AllowlistEntry {}
