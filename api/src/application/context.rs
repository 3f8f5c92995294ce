//! Who is calling and in which workspace, as every adapter hands it to the use cases:
//! a [`Principal`] (a user or an API key, whatever credential form it came with) and,
//! once a workspace is resolved, a [`Auth`] with the scopes it holds there.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use pulsar_domain::ids;
use pulsar_domain::scopes::{Permission, Role, ScopeSet};
use pulsar_domain::{Actor, EventMetadata};
use pulsar_projections::key_table::KeyEntry;
use sqlx::PgPool;

use crate::application::{Error, Result};

/// Who is calling, as far as the network tells: the socket peer, or the
/// `X-Forwarded-For` entry the trusted-proxy rule picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl RequestContext {
    /// A context for calls that do not come over the network (tests, the CLI).
    pub fn local(request_id: impl Into<String>) -> Self {
        Self {
            request_id: request_id.into(),
            client_ip: ClientIp(IpAddr::from([127, 0, 0, 1])),
            user_agent: String::new(),
        }
    }
}

/// Per-request facts handlers and extractors read.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client_ip: ClientIp,
    pub user_agent: String,
}

/// What kind of principal is calling.
#[derive(Debug, Clone)]
pub enum PrincipalKind {
    User,
    /// An API key, directly or through a session made from it.
    ApiKey(Arc<KeyEntry>),
}

/// An authenticated caller, whatever credential form it used.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user id or the key id.
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    /// The session this request came with, if any.
    pub session: Option<Session>,
    /// For a user session, the workspace the request resolved to at authentication
    /// (the one it names, else the primary one) and the user's role there, read in the
    /// same query as the session, so handlers need no second lookup.
    pub membership: Option<(String, Role)>,
    /// The workspace the request names (API.md section 1), checked to be an id.
    pub requested_workspace: Option<String>,
    pub context: RequestContext,
}

/// A session token's stored facts.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

impl Principal {
    pub fn actor(&self) -> Actor {
        match self.kind {
            PrincipalKind::User => Actor::user(&self.id),
            PrincipalKind::ApiKey(_) => Actor::api_key(&self.id),
        }
    }

    /// Metadata for the events this principal's commands append.
    pub fn metadata(&self) -> EventMetadata {
        EventMetadata {
            actor: self.actor(),
            request_id: self.context.request_id.clone(),
            client_ip: self.context.client_ip.0.to_string(),
            user_agent: self.context.user_agent.clone(),
            workspace_id: None,
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        matches!(self.kind, PrincipalKind::User).then_some(self.id.as_str())
    }

    pub fn key(&self) -> Option<&KeyEntry> {
        match &self.kind {
            PrincipalKind::ApiKey(entry) => Some(entry),
            PrincipalKind::User => None,
        }
    }

    /// The principal's role in `workspace_id`, `None` when it may not act there.
    /// A key acts only in its own workspace (with its own scopes, not a role's).
    pub async fn membership(&self, pool: &PgPool, workspace_id: &str) -> Result<Option<Role>> {
        if !ids::is_id(ids::prefix::WORKSPACE, workspace_id) {
            // Cannot name a workspace, so it is none of this principal's.
            return Ok(None);
        }
        match &self.kind {
            // Read with the session already (the workspace the request resolved to).
            PrincipalKind::User
                if self
                    .membership
                    .as_ref()
                    .is_some_and(|(ws, _)| ws == workspace_id) =>
            {
                Ok(self.membership.as_ref().map(|(_, role)| *role))
            }
            PrincipalKind::User => {
                Ok(pulsar_projections::identity::role_of(pool, workspace_id, &self.id).await?)
            }
            PrincipalKind::ApiKey(key) => {
                Ok((key.workspace_id == workspace_id).then_some(Role::Member))
            }
        }
    }

    /// The workspace and scopes this principal acts with in `workspace_id`, or 404 when
    /// it may not act there (another tenant's workspace does not exist for it).
    pub async fn in_workspace(&self, pool: &PgPool, workspace_id: &str) -> Result<Auth> {
        let role = self
            .membership(pool, workspace_id)
            .await?
            .ok_or_else(|| Error::not_found("Workspace"))?;
        Ok(self.auth_for(workspace_id.to_string(), role))
    }

    pub(crate) fn auth_for(&self, workspace_id: String, role: Role) -> Auth {
        let (scopes, role) = match &self.kind {
            PrincipalKind::User => (role.scopes(), Some(role)),
            PrincipalKind::ApiKey(key) => (key.scopes, None),
        };
        Auth {
            principal: self.clone(),
            workspace_id,
            role,
            scopes,
        }
    }
}

/// A principal acting in one resolved workspace, with the scopes it holds there.
#[derive(Debug, Clone)]
pub struct Auth {
    pub principal: Principal,
    pub workspace_id: String,
    /// The member's role, for user sessions.
    pub role: Option<Role>,
    pub scopes: ScopeSet,
}

impl Auth {
    /// The route's scope check: 403 `access_denied` naming the missing scope.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.scopes.allows(permission) {
            Ok(())
        } else {
            Err(Error::AccessDenied(format!(
                "This credential lacks the `{permission}` scope."
            )))
        }
    }

    pub fn metadata(&self) -> EventMetadata {
        self.principal.metadata()
    }

    /// Who acts, as the domain sees its authority: the user's role, or for a key the
    /// role whose powers a key may at most exercise over members (never owner).
    pub fn acting_role(&self) -> Role {
        self.role.unwrap_or(Role::Admin)
    }
}
