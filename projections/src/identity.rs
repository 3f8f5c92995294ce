//! The `identity` projection: `users`, `workspaces` and `workspace_members`.

use chrono::SubsecRound;
use cqrs_es::Aggregate;
use pulsar_domain::scopes::Role;
use pulsar_domain::user::{User, UserEvent};
use pulsar_domain::workspace::{Tier, Workspace, WorkspaceEvent};
use sqlx::PgConnection;

use crate::list::{Column, ListSpec};
use crate::log::StoredEvent;
use crate::subscription::{Projection, ProjectionError};

/// The workspaces a user belongs to, with their role in each.
pub static WORKSPACES: ListSpec = ListSpec {
    from: "workspaces w JOIN workspace_members m ON m.workspace_id = w.id",
    item: "jsonb_build_object('id', w.id, 'name', w.name, 'slug', w.slug, 'tier', w.tier,
            'settings', w.settings, 'pixel_id', w.pixel_id, 'role', m.role,
            'created_by', w.created_by, 'version', w.version,
            'created_at', rfc3339(w.created_at), 'updated_at', rfc3339(w.updated_at))",
    id: "w.id",
    sortable: &[
        Column {
            name: "name",
            sql: "w.name",
        },
        Column {
            name: "slug",
            sql: "w.slug",
        },
        Column {
            name: "tier",
            sql: "w.tier",
        },
        Column {
            name: "created_at",
            sql: "w.created_at",
        },
        Column {
            name: "updated_at",
            sql: "w.updated_at",
        },
    ],
    nullable: &[],
    filters: &[
        Column {
            name: "tier",
            sql: "w.tier",
        },
        Column {
            name: "role",
            sql: "m.role",
        },
    ],
    created_at: Some("w.created_at"),
    updated_at: Some("w.updated_at"),
    search: Some("w.search"),
    fields: &[
        "id",
        "name",
        "slug",
        "tier",
        "settings",
        "pixel_id",
        "role",
        "created_by",
        "version",
        "created_at",
        "updated_at",
    ],
    includes: &[],
    filter_values: &[("tier", Tier::NAMES), ("role", Role::NAMES)],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "created_at",
};

/// A workspace's members.
pub static MEMBERS: ListSpec = ListSpec {
    from: "workspace_members m JOIN users u ON u.id = m.user_id",
    item: "jsonb_build_object('user_id', m.user_id, 'email', u.email, 'name', u.name,
            'role', m.role, 'created_at', rfc3339(m.created_at),
            'updated_at', rfc3339(m.updated_at))",
    id: "m.user_id",
    sortable: &[
        Column {
            name: "email",
            sql: "u.email",
        },
        Column {
            name: "name",
            sql: "u.name",
        },
        Column {
            name: "role",
            sql: "m.role",
        },
        Column {
            name: "created_at",
            sql: "m.created_at",
        },
        Column {
            name: "updated_at",
            sql: "m.updated_at",
        },
    ],
    nullable: &["name"],
    filters: &[Column {
        name: "role",
        sql: "m.role",
    }],
    created_at: Some("m.created_at"),
    updated_at: Some("m.updated_at"),
    search: Some("to_tsvector('simple', u.email || ' ' || coalesce(u.name, ''))"),
    fields: &[
        "user_id",
        "email",
        "name",
        "role",
        "created_at",
        "updated_at",
    ],
    includes: &[],
    filter_values: &[("role", Role::NAMES)],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "created_at",
};

/// A key's own workspace: no membership, so no role.
pub static KEY_WORKSPACE: ListSpec = ListSpec {
    from: "workspaces w",
    item: "jsonb_build_object('id', w.id, 'name', w.name, 'slug', w.slug, 'tier', w.tier,
            'settings', w.settings, 'pixel_id', w.pixel_id, 'role', NULL,
            'created_by', w.created_by, 'version', w.version,
            'created_at', rfc3339(w.created_at), 'updated_at', rfc3339(w.updated_at))",
    id: "w.id",
    sortable: &[Column {
        name: "created_at",
        sql: "w.created_at",
    }],
    nullable: &[],
    filters: &[],
    created_at: None,
    updated_at: None,
    search: None,
    fields: &[],
    includes: &[],
    filter_values: &[],
    id_filters: &[],
    contains_filters: &[],
    default_sort: "created_at",
};

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
        // Changes to the workspace row move its version in the same statement.
        WorkspaceEvent::WorkspaceUpdated { name, settings, .. } => {
            sqlx::query(
                "UPDATE workspaces SET name = $2, settings = $3, updated_at = $4, version = $5
                  WHERE id = $1",
            )
            .bind(id)
            .bind(name)
            .bind(sqlx::types::Json(settings))
            .bind(at)
            .bind(event.sequence)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        WorkspaceEvent::WorkspaceTierChanged { tier, .. } => {
            sqlx::query(
                "UPDATE workspaces SET tier = $2, updated_at = $3, version = $4 WHERE id = $1",
            )
            .bind(id)
            .bind(tier.as_str())
            .bind(at)
            .bind(event.sequence)
            .execute(&mut *conn)
            .await?;
            return Ok(());
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

/// A workspace's name and slug.
pub async fn workspace_name(
    pool: &sqlx::PgPool,
    workspace_id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT name, slug FROM workspaces WHERE id = $1")
        .bind(workspace_id)
        .fetch_optional(pool)
        .await
}

/// A user's email and name.
pub async fn user(
    pool: &sqlx::PgPool,
    user_id: &str,
) -> Result<Option<(String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT email, name FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_optional(pool)
        .await
}
