//! Uniqueness claims (`unique_claims`): what an event-sourced write side cannot check by
//! itself, such as a workspace slug, is claimed before the command runs and released
//! when the command fails, so two concurrent requests cannot both win.

use sqlx::PgPool;

use crate::application::Result;

/// Kinds of claims.
pub const WORKSPACE_SLUG: &str = "workspace_slug";

/// Claims `value` for `owner_id`; `false` when someone else holds it.
pub async fn claim(pool: &PgPool, kind: &str, value: &str, owner_id: &str) -> Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO unique_claims (kind, value, owner_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(kind)
    .bind(value)
    .bind(owner_id)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Releases a claim `owner_id` holds.
pub async fn release(pool: &PgPool, kind: &str, value: &str, owner_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM unique_claims WHERE kind = $1 AND value = $2 AND owner_id = $3")
        .bind(kind)
        .bind(value)
        .bind(owner_id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Releases every claim of one kind `owner_id` holds (e.g. on deletion).
pub async fn release_all(pool: &PgPool, kind: &str, owner_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM unique_claims WHERE kind = $1 AND owner_id = $2")
        .bind(kind)
        .bind(owner_id)
        .execute(pool)
        .await?;
    Ok(())
}
