//! The scope catalog: `resource:action`, `resource:*` and `*`.
//!
//! Scopes are parsed once into a bit set ([`ScopeSet`]), so checking one on every
//! request is a single AND.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Everything a scope can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Workspaces,
    ApiKeys,
    Projects,
    Tasks,
    Crm,
    Documents,
    Webhooks,
    Entitlements,
    Usage,
    Audit,
    Seo,
    Mcp,
}

impl Resource {
    pub const ALL: [Resource; 12] = [
        Self::Workspaces,
        Self::ApiKeys,
        Self::Projects,
        Self::Tasks,
        Self::Crm,
        Self::Documents,
        Self::Webhooks,
        Self::Entitlements,
        Self::Usage,
        Self::Audit,
        Self::Seo,
        Self::Mcp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workspaces => "workspaces",
            Self::ApiKeys => "api-keys",
            Self::Projects => "projects",
            Self::Tasks => "tasks",
            Self::Crm => "crm",
            Self::Documents => "documents",
            Self::Webhooks => "webhooks",
            Self::Entitlements => "entitlements",
            Self::Usage => "usage",
            Self::Audit => "audit",
            Self::Seo => "seo",
            Self::Mcp => "mcp",
        }
    }

    fn index(self) -> u32 {
        self as u32
    }
}

/// What a scope allows on its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    Write,
    Delete,
}

impl Action {
    pub const ALL: [Action; 3] = [Self::Read, Self::Write, Self::Delete];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Delete => "delete",
        }
    }

    fn index(self) -> u32 {
        self as u32
    }
}

/// One required permission, e.g. `projects:write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Permission(pub Resource, pub Action);

impl Permission {
    fn bit(self) -> u64 {
        1u64 << (self.0.index() * 3 + self.1.index())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0.as_str(), self.1.as_str())
    }
}

/// A scope string was not in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

/// A parsed scope as granted to a key: exact, `resource:*`, or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    All,
    Resource(Resource),
    Exact(Permission),
}

impl Scope {
    fn bits(self) -> u64 {
        match self {
            Self::All => ALL_BITS,
            Self::Resource(resource) => Action::ALL
                .iter()
                .map(|&action| Permission(resource, action).bit())
                .fold(0, |acc, bit| acc | bit),
            Self::Exact(permission) => permission.bit(),
        }
    }
}

const ALL_BITS: u64 = (1u64 << (Resource::ALL.len() * Action::ALL.len())) - 1;

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(Self::All);
        }
        let unknown = || UnknownScope(s.to_string());
        let (resource, action) = s.split_once(':').ok_or_else(unknown)?;
        let resource = Resource::ALL
            .into_iter()
            .find(|r| r.as_str() == resource)
            .ok_or_else(unknown)?;
        if action == "*" {
            return Ok(Self::Resource(resource));
        }
        let action = Action::ALL
            .into_iter()
            .find(|a| a.as_str() == action)
            .ok_or_else(unknown)?;
        Ok(Self::Exact(Permission(resource, action)))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Resource(resource) => write!(f, "{}:*", resource.as_str()),
            Self::Exact(permission) => permission.fmt(f),
        }
    }
}

/// The permissions a principal holds, as a bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSet(u64);

impl ScopeSet {
    pub const EMPTY: ScopeSet = ScopeSet(0);
    pub const ALL: ScopeSet = ScopeSet(ALL_BITS);

    /// Parses scope strings; the first unknown one is the error.
    pub fn parse<S: AsRef<str>>(scopes: &[S]) -> Result<Self, UnknownScope> {
        scopes.iter().try_fold(Self::EMPTY, |set, scope| {
            Ok(set.with(scope.as_ref().parse::<Scope>()?))
        })
    }

    pub fn with(self, scope: Scope) -> Self {
        Self(self.0 | scope.bits())
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every permission of `other` is in `self`.
    pub fn contains(self, other: ScopeSet) -> bool {
        other.0 & !self.0 == 0
    }

    /// The granted permissions as `resource:action` strings, in catalog order.
    pub fn to_strings(self) -> Vec<String> {
        if self == Self::ALL {
            return vec!["*".into()];
        }
        Resource::ALL
            .into_iter()
            .flat_map(|r| Action::ALL.into_iter().map(move |a| Permission(r, a)))
            .filter(|p| self.allows(*p))
            .map(|p| p.to_string())
            .collect()
    }
}

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Self::Owner, Self::Admin, Self::Member, Self::Viewer];
    /// Every role as the API spells it.
    pub const NAMES: &'static [&'static str] = &["owner", "admin", "member", "viewer"];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// API.md section 2: owner all; admin all but `workspaces:delete`; member read and
    /// write on projects, tasks, crm, documents and read elsewhere; viewer read only.
    pub fn scopes(self) -> ScopeSet {
        let read_all = Resource::ALL.into_iter().fold(ScopeSet::EMPTY, |set, r| {
            set.with(Scope::Exact(Permission(r, Action::Read)))
        });
        match self {
            Self::Owner => ScopeSet::ALL,
            Self::Admin => {
                ScopeSet(ALL_BITS & !Permission(Resource::Workspaces, Action::Delete).bit())
            }
            Self::Member => [
                Resource::Projects,
                Resource::Tasks,
                Resource::Crm,
                Resource::Documents,
            ]
            .into_iter()
            .fold(read_all, |set, r| {
                set.with(Scope::Exact(Permission(r, Action::Write)))
            }),
            Self::Viewer => read_all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_catalog_and_rejects_the_rest() {
        assert_eq!("*".parse::<Scope>(), Ok(Scope::All));
        assert_eq!("crm:*".parse::<Scope>(), Ok(Scope::Resource(Resource::Crm)));
        assert_eq!(
            "api-keys:delete".parse::<Scope>(),
            Ok(Scope::Exact(Permission(Resource::ApiKeys, Action::Delete)))
        );
        for bad in [
            "",
            "crm",
            "crm:",
            "crm:admin",
            "users:read",
            "CRM:read",
            "*:read",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad} should be unknown");
        }
    }

    #[test]
    fn wildcards_grant_what_they_say() {
        let set = ScopeSet::parse(&["projects:*", "tasks:read"]).expect("valid scopes");
        assert!(set.allows(Permission(Resource::Projects, Action::Delete)));
        assert!(set.allows(Permission(Resource::Tasks, Action::Read)));
        assert!(!set.allows(Permission(Resource::Tasks, Action::Write)));
        assert!(!set.allows(Permission(Resource::Crm, Action::Read)));
        let all = ScopeSet::parse(&["*"]).expect("valid scope");
        assert!(Resource::ALL.into_iter().all(|r| Action::ALL
            .into_iter()
            .all(|a| all.allows(Permission(r, a)))));
        assert_eq!(all.to_strings(), vec!["*"]);
    }

    #[test]
    fn roles_map_to_scopes() {
        let delete_ws = Permission(Resource::Workspaces, Action::Delete);
        assert!(Role::Owner.scopes().allows(delete_ws));
        assert!(!Role::Admin.scopes().allows(delete_ws));
        assert!(Role::Admin
            .scopes()
            .allows(Permission(Resource::ApiKeys, Action::Delete)));
        let member = Role::Member.scopes();
        assert!(member.allows(Permission(Resource::Tasks, Action::Write)));
        assert!(!member.allows(Permission(Resource::Tasks, Action::Delete)));
        assert!(member.allows(Permission(Resource::Webhooks, Action::Read)));
        assert!(!member.allows(Permission(Resource::Webhooks, Action::Write)));
        let viewer = Role::Viewer.scopes();
        assert!(viewer.allows(Permission(Resource::Audit, Action::Read)));
        assert!(!viewer.allows(Permission(Resource::Projects, Action::Write)));
    }
}

/// Every scope the catalog accepts, as the API spells them: `*`, then per resource
/// `resource:*` and its actions.
pub fn catalog() -> Vec<String> {
    std::iter::once("*".to_string())
        .chain(Resource::ALL.into_iter().flat_map(|resource| {
            std::iter::once(Scope::Resource(resource))
                .chain(
                    Action::ALL
                        .into_iter()
                        .map(move |action| Scope::Exact(Permission(resource, action))),
                )
                .map(|scope| scope.to_string())
        }))
        .collect()
}

/// One scope in the document: a value of the [`catalog`].
#[cfg(feature = "openapi")]
#[derive(Debug)]
pub struct ScopeName;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ScopeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(catalog()))
            .description(Some("`resource:action`, `resource:*` or `*`."))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ScopeName {}
