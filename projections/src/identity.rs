//! The `identity` projection: `users`, `workspaces` and `workspace_members`.

use chrono::SubsecRound;
use cqrs_es::Aggregate;
use pulsar_domain::scopes::Role;
use pulsar_domain::user::{User, UserEvent};
use pulsar_domain::workspace::{Workspace, WorkspaceEvent};
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// Keeps the identity read models.
#[derive(Debug, Default)]
pub struct IdentityProjection;

/// The subscriber name handlers wait on after identity commands.
pub const NAME: &str = "identity";

impl Projection for IdentityProjection {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[User::TYPE, Workspace::TYPE]
    }

    fn tables(&self) -> crate::rebuild::Tables {
        crate::rebuild::Tables {
            owned: vec!["users", "workspaces", "workspace_members"],
            shared: vec![],
        }
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        match event.aggregate_type.as_str() {
            User::TYPE => apply_user(conn, event).await,
            Workspace::TYPE => apply_workspace(conn, event).await,
            _ => Ok(()),
        }
    }
}

async fn apply_user(conn: &mut PgConnection, event: &StoredEvent) -> Result<(), ProjectionError> {
    let envelope = event.decode::<User>()?;
    let at = event.recorded_at.trunc_subsecs(3);
    match envelope.payload {
        UserEvent::UserRegistered { email, name } => {
            sqlx::query(
                "INSERT INTO users (id, email, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(&event.aggregate_id)
            .bind(email)
            .bind(name)
            .bind(at)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

async fn apply_workspace(
    conn: &mut PgConnection,
    event: &StoredEvent,
) -> Result<(), ProjectionError> {
    let id = &event.aggregate_id;
    // API timestamps have millisecond precision; store them so, so that filtering by a
    // timestamp the API returned is exact.
    let at = event.recorded_at.trunc_subsecs(3);
    let envelope = event.decode::<Workspace>()?;
    match envelope.payload {
        WorkspaceEvent::WorkspaceCreated {
            name,
            slug,
            tier,
            settings,
            pixel_id,
            owner_id,
        } => {
            sqlx::query(
                "INSERT INTO workspaces
                    (id, name, slug, tier, settings, pixel_id, owner_id, created_by, version, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $10, $9, $9)",
            )
            .bind(id)
            .bind(name)
            .bind(slug)
            .bind(tier.as_str())
            .bind(sqlx::types::Json(settings))
            .bind(pixel_id)
            .bind(owner_id)
            .bind(event.actor_json())
            .bind(at)
            .bind(event.sequence)
            .execute(&mut *conn)
            .await?;
        }
        WorkspaceEvent::WorkspaceUpdated { name, settings, .. } => {
            sqlx::query(
                "UPDATE workspaces SET name = $2, settings = $3, updated_at = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(sqlx::types::Json(settings))
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        WorkspaceEvent::WorkspaceTierChanged { tier, .. } => {
            sqlx::query("UPDATE workspaces SET tier = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(tier.as_str())
                .bind(at)
                .execute(&mut *conn)
                .await?;
        }
        WorkspaceEvent::WorkspaceDeleted => {
            // Its members go with it (said here, not left to a foreign key, so that a
            // rebuild into plain tables folds the same way).
            sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM workspaces WHERE id = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
        }
        WorkspaceEvent::MemberAdded { user_id, role } => {
            sqlx::query(
                "INSERT INTO workspace_members (workspace_id, user_id, role, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        WorkspaceEvent::MemberRoleChanged { user_id, role, .. } => {
            sqlx::query(
                "UPDATE workspace_members SET role = $3, updated_at = $4 WHERE workspace_id = $1 AND user_id = $2",
            )
            .bind(id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        WorkspaceEvent::MemberRemoved { user_id, .. } => {
            sqlx::query("DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    // Every event moves the aggregate's version (a no-op for a deleted workspace).
    sqlx::query("UPDATE workspaces SET version = $2 WHERE id = $1")
        .bind(id)
        .bind(event.sequence)
        .execute(conn)
        .await?;
    Ok(())
}

/// `user_id`'s role in `workspace_id`, if they are a member.
pub async fn role_of(
    pool: &sqlx::PgPool,
    workspace_id: &str,
    user_id: &str,
) -> Result<Option<Role>, sqlx::Error> {
    let role: Option<String> = sqlx::query_scalar(
        "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
    )
    .bind(workspace_id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(role.as_deref().and_then(Role::parse))
}

/// A user's primary workspace, the one they joined first, with their role there.
pub async fn primary_workspace(
    pool: &sqlx::PgPool,
    user_id: &str,
) -> Result<Option<(String, Role)>, sqlx::Error> {
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT workspace_id, role FROM workspace_members WHERE user_id = $1
          ORDER BY created_at, workspace_id LIMIT 1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(workspace_id, role)| Some((workspace_id, Role::parse(&role)?))))
}
