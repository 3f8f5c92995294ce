//! The `Workspace` aggregate: a tenant, its tier and settings, and its members' roles.
//!
//! Rules enforced here: a workspace always keeps at least one owner; only an owner may
//! grant, change or remove the owner role; a deleted workspace accepts nothing more.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ValidationErrors};
use crate::scopes::Role;
use crate::validate;

/// A workspace's plan tier; it sets rate limits and feature limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Free,
    Starter,
    Pro,
    Agency,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Self::Free,
        Self::Starter,
        Self::Pro,
        Self::Agency,
        Self::Enterprise,
    ];

    /// Every tier as the API spells it.
    pub const NAMES: &'static [&'static str] = &["free", "starter", "pro", "agency", "enterprise"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Starter => "starter",
            Self::Pro => "pro",
            Self::Agency => "agency",
            Self::Enterprise => "enterprise",
        }
    }

    pub fn parse(value: &str) -> Option<Tier> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// API.md's rate limits: requests per minute, and the burst allowed on top of them
    /// as a percentage of that limit.
    pub fn rate_limit(self) -> (u32, u32) {
        match self {
            Self::Free => (60, 0),
            Self::Starter => (1_000, 20),
            Self::Pro => (5_000, 30),
            Self::Agency => (20_000, 50),
            Self::Enterprise => (100_000, 100),
        }
    }
}

/// Workspace settings (API.md: `{timezone, locale}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkspaceSettings {
    pub timezone: String,
    pub locale: String,
}

impl Default for WorkspaceSettings {
    fn default() -> Self {
        Self {
            timezone: "UTC".into(),
            locale: "en".into(),
        }
    }
}

/// A partial settings change; absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub timezone: Option<String>,
    pub locale: Option<String>,
}

/// An IANA-style zone name (`UTC`, `Europe/Berlin`, `America/Argentina/Buenos_Aires`).
fn timezone(value: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
            && p.as_bytes()[0].is_ascii_alphabetic()
    };
    if value.len() <= 64 && value.split('/').all(part_ok) {
        Ok(())
    } else {
        Err("The timezone must be a valid IANA time zone name, e.g. Europe/Berlin.".into())
    }
}

/// A BCP 47 language tag of the common shapes (`en`, `pt-BR`, `zh-Hant-TW`).
fn locale(value: &str) -> Result<(), String> {
    let mut parts = value.split('-');
    let language_ok = parts
        .next()
        .is_some_and(|l| (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_lowercase()));
    let rest_ok = parts.all(|p| {
        (p.len() == 4
            && p.as_bytes()[0].is_ascii_uppercase()
            && p.bytes().all(|b| b.is_ascii_alphabetic()))
            || (p.len() == 2 && p.bytes().all(|b| b.is_ascii_uppercase()))
            || (p.len() == 3 && p.bytes().all(|b| b.is_ascii_digit()))
    });
    if language_ok && rest_ok && value.len() <= 35 {
        Ok(())
    } else {
        Err("The locale must be a language tag such as en or pt-BR.".into())
    }
}

/// Validates a new workspace's fields; shared by the aggregate and request pre-checks.
pub fn validate_new(name: &str, slug: &str) -> ValidationErrors {
    let mut errors = ValidationErrors::new();
    errors.check("name", validate::required_text("name", name, 100));
    errors.check("slug", validate::slug(slug));
    errors
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Workspace {
    created: bool,
    deleted: bool,
    name: String,
    slug: String,
    tier: Tier,
    settings: WorkspaceSettings,
    members: BTreeMap<String, Role>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WorkspaceCommand {
    CreateWorkspace {
        name: String,
        slug: String,
        tier: Tier,
        pixel_id: String,
        owner_id: String,
    },
    UpdateWorkspace {
        name: Option<String>,
        settings: Option<SettingsPatch>,
        /// A new plan tier: an owner's act.
        tier: Option<Tier>,
        /// The role of the member acting.
        by: Role,
    },
    DeleteWorkspace,
    /// `by` is the role of the member acting.
    AddMember {
        user_id: String,
        role: Role,
        by: Role,
    },
    ChangeMemberRole {
        user_id: String,
        role: Role,
        by: Role,
    },
    RemoveMember {
        user_id: String,
        by: Role,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WorkspaceEvent {
    WorkspaceCreated {
        name: String,
        slug: String,
        tier: Tier,
        settings: WorkspaceSettings,
        pixel_id: String,
        owner_id: String,
    },
    /// Carries the resulting name and settings, and which fields changed.
    WorkspaceUpdated {
        name: String,
        settings: WorkspaceSettings,
        changed: Vec<String>,
    },
    /// The plan tier changed: rate limits and feature limits follow on every node.
    WorkspaceTierChanged {
        tier: Tier,
        previous_tier: Tier,
    },
    WorkspaceDeleted,
    MemberAdded {
        user_id: String,
        role: Role,
    },
    MemberRoleChanged {
        user_id: String,
        role: Role,
        previous_role: Role,
    },
    MemberRemoved {
        user_id: String,
        role: Role,
    },
}

impl DomainEvent for WorkspaceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WorkspaceCreated { .. } => "WorkspaceCreated",
            Self::WorkspaceUpdated { .. } => "WorkspaceUpdated",
            Self::WorkspaceTierChanged { .. } => "WorkspaceTierChanged",
            Self::WorkspaceDeleted => "WorkspaceDeleted",
            Self::MemberAdded { .. } => "MemberAdded",
            Self::MemberRoleChanged { .. } => "MemberRoleChanged",
            Self::MemberRemoved { .. } => "MemberRemoved",
        }
        .into()
    }

    fn event_version(&self) -> String {
        "1.0".into()
    }
}

impl Workspace {
    fn live(&self) -> Result<(), DomainError> {
        if self.created && !self.deleted {
            Ok(())
        } else {
            Err(DomainError::NotFound("workspace"))
        }
    }

    fn owners(&self) -> usize {
        self.members.values().filter(|r| **r == Role::Owner).count()
    }

    fn member(&self, user_id: &str) -> Result<Role, DomainError> {
        self.members
            .get(user_id)
            .copied()
            .ok_or(DomainError::NotFound("member"))
    }

    /// Only owners touch the owner role, and admins can't manage other admins upward.
    fn may_manage(by: Role, target: Role) -> Result<(), DomainError> {
        if target == Role::Owner && by != Role::Owner {
            return Err(DomainError::Forbidden(
                "Only an owner may grant, change or remove the owner role.".into(),
            ));
        }
        if by < Role::Admin {
            return Err(DomainError::Forbidden(
                "Only owners and admins may manage members.".into(),
            ));
        }
        Ok(())
    }

    fn keeps_an_owner(&self, user_id: &str, new_role: Option<Role>) -> Result<(), DomainError> {
        let is_owner = self.members.get(user_id) == Some(&Role::Owner);
        if is_owner && new_role != Some(Role::Owner) && self.owners() == 1 {
            return Err(DomainError::Conflict(
                "A workspace must keep at least one owner.".into(),
            ));
        }
        Ok(())
    }
}

impl Aggregate for Workspace {
    const TYPE: &'static str = "Workspace";
    type Command = WorkspaceCommand;
    type Event = WorkspaceEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: WorkspaceCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            WorkspaceCommand::CreateWorkspace {
                name,
                slug,
                tier,
                pixel_id,
                owner_id,
            } => {
                if self.created {
                    return Err(DomainError::AlreadyExists("workspace"));
                }
                validate_new(&name, &slug).into_result()?;
                let owner = owner_id.clone();
                sink.write(
                    WorkspaceEvent::WorkspaceCreated {
                        name: name.trim().to_string(),
                        slug,
                        tier,
                        settings: WorkspaceSettings::default(),
                        pixel_id,
                        owner_id,
                    },
                    self,
                )
                .await;
                sink.write(
                    WorkspaceEvent::MemberAdded {
                        user_id: owner,
                        role: Role::Owner,
                    },
                    self,
                )
                .await;
            }
            WorkspaceCommand::UpdateWorkspace {
                name,
                settings,
                tier,
                by,
            } => {
                self.live()?;
                let tier = tier.filter(|tier| *tier != self.tier);
                if tier.is_some() && by != Role::Owner {
                    return Err(DomainError::Forbidden(
                        "Only an owner may change the workspace's tier.".into(),
                    ));
                }
                let mut errors = ValidationErrors::new();
                let mut changed = Vec::new();
                let mut next_name = self.name.clone();
                let mut next_settings = self.settings.clone();
                if let Some(name) = name {
                    errors.check("name", validate::required_text("name", &name, 100));
                    let name = name.trim().to_string();
                    if name != self.name {
                        next_name = name;
                        changed.push("name".to_string());
                    }
                }
                if let Some(patch) = settings {
                    if let Some(tz) = patch.timezone {
                        errors.check("settings.timezone", timezone(&tz));
                        next_settings.timezone = tz;
                    }
                    if let Some(loc) = patch.locale {
                        errors.check("settings.locale", locale(&loc));
                        next_settings.locale = loc;
                    }
                    if next_settings != self.settings {
                        changed.push("settings".to_string());
                    }
                }
                errors.into_result()?;
                if !changed.is_empty() {
                    sink.write(
                        WorkspaceEvent::WorkspaceUpdated {
                            name: next_name,
                            settings: next_settings,
                            changed,
                        },
                        self,
                    )
                    .await;
                }
                if let Some(tier) = tier {
                    let previous_tier = self.tier;
                    sink.write(
                        WorkspaceEvent::WorkspaceTierChanged {
                            tier,
                            previous_tier,
                        },
                        self,
                    )
                    .await;
                }
            }
            WorkspaceCommand::DeleteWorkspace => {
                self.live()?;
                sink.write(WorkspaceEvent::WorkspaceDeleted, self).await;
            }
            WorkspaceCommand::AddMember { user_id, role, by } => {
                self.live()?;
                Self::may_manage(by, role)?;
                if self.members.contains_key(&user_id) {
                    return Err(DomainError::AlreadyExists("member"));
                }
                sink.write(WorkspaceEvent::MemberAdded { user_id, role }, self)
                    .await;
            }
            WorkspaceCommand::ChangeMemberRole { user_id, role, by } => {
                self.live()?;
                let previous_role = self.member(&user_id)?;
                Self::may_manage(by, previous_role.max(role))?;
                self.keeps_an_owner(&user_id, Some(role))?;
                if previous_role != role {
                    sink.write(
                        WorkspaceEvent::MemberRoleChanged {
                            user_id,
                            role,
                            previous_role,
                        },
                        self,
                    )
                    .await;
                }
            }
            WorkspaceCommand::RemoveMember { user_id, by } => {
                self.live()?;
                let role = self.member(&user_id)?;
                Self::may_manage(by, role)?;
                self.keeps_an_owner(&user_id, None)?;
                sink.write(WorkspaceEvent::MemberRemoved { user_id, role }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: WorkspaceEvent) {
        match event {
            WorkspaceEvent::WorkspaceCreated {
                name,
                slug,
                tier,
                settings,
                ..
            } => {
                self.created = true;
                self.name = name;
                self.slug = slug;
                self.tier = tier;
                self.settings = settings;
            }
            WorkspaceEvent::WorkspaceUpdated { name, settings, .. } => {
                self.name = name;
                self.settings = settings;
            }
            WorkspaceEvent::WorkspaceTierChanged { tier, .. } => self.tier = tier,
            WorkspaceEvent::WorkspaceDeleted => self.deleted = true,
            WorkspaceEvent::MemberAdded { user_id, role }
            | WorkspaceEvent::MemberRoleChanged { user_id, role, .. } => {
                self.members.insert(user_id, role);
            }
            WorkspaceEvent::MemberRemoved { user_id, .. } => {
                self.members.remove(&user_id);
            }
        }
    }
}

impl crate::Tenanted for Workspace {
    /// A workspace is its own tenant.
    fn tenant(&self, aggregate_id: &str) -> Option<String> {
        self.created.then(|| aggregate_id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type WorkspaceTest = TestFramework<Workspace>;

    #[test]
    fn names_match_the_enums() {
        let tiers: Vec<&str> = Tier::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(tiers, Tier::NAMES);
        let roles: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(roles, Role::NAMES);
    }

    fn created() -> Vec<WorkspaceEvent> {
        vec![
            WorkspaceEvent::WorkspaceCreated {
                name: "Acme".into(),
                slug: "acme".into(),
                tier: Tier::Free,
                settings: WorkspaceSettings::default(),
                pixel_id: "px_1".into(),
                owner_id: "usr_owner".into(),
            },
            WorkspaceEvent::MemberAdded {
                user_id: "usr_owner".into(),
                role: Role::Owner,
            },
        ]
    }

    #[tokio::test]
    async fn creation_makes_the_creator_owner() {
        WorkspaceTest::with(())
            .given_no_previous_events()
            .when_async(WorkspaceCommand::CreateWorkspace {
                name: " Acme ".into(),
                slug: "acme".into(),
                tier: Tier::Free,
                pixel_id: "px_1".into(),
                owner_id: "usr_owner".into(),
            })
            .await
            .then_expect_events(created());
    }

    #[tokio::test]
    async fn creation_validates_every_field() {
        let result = WorkspaceTest::with(())
            .given_no_previous_events()
            .when_async(WorkspaceCommand::CreateWorkspace {
                name: "".into(),
                slug: "-bad".into(),
                tier: Tier::Free,
                pixel_id: "px_1".into(),
                owner_id: "usr_owner".into(),
            })
            .await
            .inspect_result();
        let Err(DomainError::Validation(errors)) = result else {
            panic!("expected a validation error, got {result:?}");
        };
        assert_eq!(
            errors.fields().keys().collect::<Vec<_>>(),
            vec!["name", "slug"]
        );
    }

    #[tokio::test]
    async fn update_records_the_resulting_state_and_skips_no_ops() {
        WorkspaceTest::with(())
            .given(created())
            .when_async(WorkspaceCommand::UpdateWorkspace {
                name: Some("Acme Inc".into()),
                settings: Some(SettingsPatch {
                    timezone: Some("Europe/Berlin".into()),
                    locale: None,
                }),
                tier: None,
                by: Role::Admin,
            })
            .await
            .then_expect_events(vec![WorkspaceEvent::WorkspaceUpdated {
                name: "Acme Inc".into(),
                settings: WorkspaceSettings {
                    timezone: "Europe/Berlin".into(),
                    locale: "en".into(),
                },
                changed: vec!["name".into(), "settings".into()],
            }]);
        WorkspaceTest::with(())
            .given(created())
            .when_async(WorkspaceCommand::UpdateWorkspace {
                name: Some("Acme".into()),
                settings: None,
                tier: Some(Tier::Free),
                by: Role::Admin,
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn update_refuses_bad_settings() {
        let result = WorkspaceTest::with(())
            .given(created())
            .when_async(WorkspaceCommand::UpdateWorkspace {
                name: None,
                settings: Some(SettingsPatch {
                    timezone: Some("Not a zone!".into()),
                    locale: Some("english".into()),
                }),
                tier: None,
                by: Role::Owner,
            })
            .await
            .inspect_result();
        let Err(DomainError::Validation(errors)) = result else {
            panic!("expected a validation error, got {result:?}");
        };
        assert_eq!(
            errors.fields().keys().collect::<Vec<_>>(),
            vec!["settings.locale", "settings.timezone"]
        );
    }

    #[tokio::test]
    async fn only_an_owner_changes_the_tier_and_it_is_its_own_event() {
        for by in [Role::Admin, Role::Member, Role::Viewer] {
            WorkspaceTest::with(())
                .given(created())
                .when_async(WorkspaceCommand::UpdateWorkspace {
                    name: None,
                    settings: None,
                    tier: Some(Tier::Pro),
                    by,
                })
                .await
                .then_expect_error(DomainError::Forbidden(
                    "Only an owner may change the workspace's tier.".into(),
                ));
        }
        WorkspaceTest::with(())
            .given(created())
            .when_async(WorkspaceCommand::UpdateWorkspace {
                name: Some("Acme Pro".into()),
                settings: None,
                tier: Some(Tier::Pro),
                by: Role::Owner,
            })
            .await
            .then_expect_events(vec![
                WorkspaceEvent::WorkspaceUpdated {
                    name: "Acme Pro".into(),
                    settings: WorkspaceSettings::default(),
                    changed: vec!["name".into()],
                },
                WorkspaceEvent::WorkspaceTierChanged {
                    tier: Tier::Pro,
                    previous_tier: Tier::Free,
                },
            ]);
    }

    #[tokio::test]
    async fn the_last_owner_stays() {
        WorkspaceTest::with(())
            .given(created())
            .when_async(WorkspaceCommand::RemoveMember {
                user_id: "usr_owner".into(),
                by: Role::Owner,
            })
            .await
            .then_expect_error(DomainError::Conflict(
                "A workspace must keep at least one owner.".into(),
            ));
        WorkspaceTest::with(())
            .given(created())
            .when_async(WorkspaceCommand::ChangeMemberRole {
                user_id: "usr_owner".into(),
                role: Role::Admin,
                by: Role::Owner,
            })
            .await
            .then_expect_error(DomainError::Conflict(
                "A workspace must keep at least one owner.".into(),
            ));
    }

    #[tokio::test]
    async fn admins_cannot_touch_owners() {
        let mut events = created();
        events.push(WorkspaceEvent::MemberAdded {
            user_id: "usr_admin".into(),
            role: Role::Admin,
        });
        let result = WorkspaceTest::with(())
            .given(events.clone())
            .when_async(WorkspaceCommand::AddMember {
                user_id: "usr_new".into(),
                role: Role::Owner,
                by: Role::Admin,
            })
            .await
            .inspect_result();
        assert!(matches!(result, Err(DomainError::Forbidden(_))));
        let result = WorkspaceTest::with(())
            .given(events)
            .when_async(WorkspaceCommand::RemoveMember {
                user_id: "usr_owner".into(),
                by: Role::Admin,
            })
            .await
            .inspect_result();
        assert!(matches!(result, Err(DomainError::Forbidden(_))));
    }

    #[tokio::test]
    async fn deleted_workspaces_accept_nothing() {
        let mut events = created();
        events.push(WorkspaceEvent::WorkspaceDeleted);
        WorkspaceTest::with(())
            .given(events)
            .when_async(WorkspaceCommand::UpdateWorkspace {
                name: Some("x".into()),
                settings: None,
                tier: None,
                by: Role::Owner,
            })
            .await
            .then_expect_error(DomainError::NotFound("workspace"));
    }
}
