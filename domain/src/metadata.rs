//! Event metadata: every event records who caused it, from where, and under which request.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What kind of principal acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    User,
    ApiKey,
    System,
}

impl ActorType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::ApiKey => "api_key",
            Self::System => "system",
        }
    }
}

/// A principal that acted: a user, an API key, or the system itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub actor_type: ActorType,
    pub id: String,
}

impl Actor {
    pub fn user(id: impl Into<String>) -> Self {
        Self {
            actor_type: ActorType::User,
            id: id.into(),
        }
    }

    pub fn api_key(id: impl Into<String>) -> Self {
        Self {
            actor_type: ActorType::ApiKey,
            id: id.into(),
        }
    }

    pub fn system() -> Self {
        Self {
            actor_type: ActorType::System,
            id: "system".into(),
        }
    }
}

/// The metadata attached to every event of one command (cqrs-es stores it as a string map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    pub actor: Actor,
    pub request_id: String,
    pub client_ip: String,
    pub user_agent: String,
    /// The workspace the events belong to. Set from the aggregate itself when the
    /// command commits ([`Tenanted`]), so no caller can forget or misname it.
    pub workspace_id: Option<String>,
}

/// An aggregate that belongs to a workspace says which, so that every event's metadata
/// names it (audit, webhook fan-out and replay select a workspace's events by it).
pub trait Tenanted {
    /// The workspace of aggregate `aggregate_id` in this state, `None` for aggregates
    /// outside any workspace (users).
    fn tenant(&self, aggregate_id: &str) -> Option<String>;
}

impl EventMetadata {
    /// The map handed to `execute_with_metadata`; keys are part of the audit contract.
    pub fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("actor_type".into(), self.actor.actor_type.as_str().into()),
            ("actor_id".into(), self.actor.id.clone()),
            ("request_id".into(), self.request_id.clone()),
            ("client_ip".into(), self.client_ip.clone()),
            ("user_agent".into(), self.user_agent.clone()),
        ])
        .into_iter()
        .chain(
            self.workspace_id
                .clone()
                .map(|id| ("workspace_id".to_string(), id)),
        )
        .collect()
    }
}
