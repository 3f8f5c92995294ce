//! `Idempotency-Key` on every POST, PUT, PATCH and DELETE (API.md section 3).
//!
//! The first request with a key claims `(principal, key)` in PostgreSQL, runs, and stores
//! its status and body for 24 hours. A repeat with the same request replays them without
//! running anything; a repeat with a different request is 422 `idempotency_key_reused`;
//! a repeat while the first is still running is 409 `idempotency_conflict`. A 5xx is not
//! kept (the work may not have happened), so the client can retry with the same key.
//! Requests without a principal (sign-up, login) are not scoped to anyone and pass
//! through untouched.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::application::AppState;
use crate::application::Error;
use crate::application::Principal;

/// Longest accepted key (API.md).
pub const MAX_KEY_LEN: usize = 255;
/// How long a claimed key may stay "running" before it is taken to have died.
const LOCK_SECONDS: f64 = 60.0;
/// Largest response kept for replay; larger ones are answered but not kept.
const MAX_STORED_BODY: usize = 4 * 1024 * 1024;

fn key_of(request: &Request) -> Result<Option<String>, Error> {
    let mut values = request.headers().get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::BadRequest(
            "The Idempotency-Key header is given more than once.".into(),
        ));
    }
    let key = value
        .to_str()
        .ok()
        .filter(|k| {
            !k.is_empty() && k.len() <= MAX_KEY_LEN && k.bytes().all(|b| b.is_ascii_graphic())
        })
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "The Idempotency-Key header must be 1 to {MAX_KEY_LEN} visible ASCII characters."
            ))
        })?;
    Ok(Some(key.to_string()))
}

/// The layer (inside authentication, which provides the principal).
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(request).await;
    }
    let key = match key_of(&request) {
        Ok(Some(key)) => key,
        Ok(None) => return next.run(request).await,
        Err(error) => return error.into_response(),
    };
    let Some(principal) = request.extensions().get::<Principal>() else {
        return next.run(request).await;
    };
    let owner = format!("{}:{}", principal.actor().actor_type.as_str(), principal.id);
    match run(&state, owner, key, request, next).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn run(
    state: &AppState,
    owner: String,
    key: String,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body_bytes;
    let bytes = to_bytes(body, limit)
        .await
        .map_err(|_| Error::PayloadTooLarge { limit })?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str());
    hasher.update(b" ");
    hasher.update(parts.uri.path_and_query().map_or("", |p| p.as_str()));
    hasher.update(b"\n");
    hasher.update(&bytes);
    let hash = hasher.finalize().to_vec();

    // Claim the key, or take over one that expired or whose first request died.
    let claimed: Option<bool> = sqlx::query_scalar(
        "INSERT INTO idempotency_keys (principal_id, key, request_hash, locked_until, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), now() + interval '24 hours')
         ON CONFLICT (principal_id, key) DO UPDATE
            SET request_hash = excluded.request_hash, locked_until = excluded.locked_until,
                expires_at = excluded.expires_at, created_at = now(),
                status_code = NULL, content_type = NULL, response_body = NULL
          WHERE idempotency_keys.expires_at < now()
             OR (idempotency_keys.status_code IS NULL AND idempotency_keys.locked_until < now())
         RETURNING true",
    )
    .bind(&owner)
    .bind(&key)
    .bind(&hash)
    .bind(LOCK_SECONDS)
    .fetch_optional(&state.pool)
    .await?;

    if claimed.is_none() {
        let row = sqlx::query(
            "SELECT request_hash, status_code, content_type, response_body
               FROM idempotency_keys WHERE principal_id = $1 AND key = $2",
        )
        .bind(&owner)
        .bind(&key)
        .fetch_one(&state.pool)
        .await?;
        let stored_hash: Vec<u8> = row.try_get("request_hash")?;
        if stored_hash != hash {
            return Err(Error::IdempotencyKeyReused);
        }
        let Some(status) = row.try_get::<Option<i16>, _>("status_code")? else {
            return Err(Error::IdempotencyConflict);
        };
        let status = StatusCode::from_u16(status as u16).map_err(Error::internal)?;
        let mut body: Vec<u8> = row
            .try_get::<Option<Vec<u8>>, _>("response_body")?
            .unwrap_or_default();
        let is_error = status.is_client_error() || status.is_server_error();
        if is_error {
            // A replayed error is the first one, but its `request_id` must still match
            // this response's X-Request-ID.
            if let Ok(serde_json::Value::Object(mut envelope)) = serde_json::from_slice(&body) {
                if let Some(id) = crate::http::request_id::current() {
                    envelope.insert("request_id".into(), serde_json::Value::String(id));
                }
                body = serde_json::to_vec(&envelope).map_err(Error::internal)?;
            }
        }
        let mut response = (status, Body::from(body)).into_response();
        if let Some(content_type) = row
            .try_get::<Option<String>, _>("content_type")?
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            response.headers_mut().insert("content-type", content_type);
        }
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Ok(response);
    }

    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let status = response.status();
    if status.is_server_error() {
        // Not kept: whether the work happened is unknown, so a retry must be possible.
        release(state, &owner, &key).await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let Ok(body) = to_bytes(body, MAX_STORED_BODY).await else {
        release(state, &owner, &key).await;
        return Err(Error::internal(
            "response body too large to keep for replay",
        ));
    };
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let stored = sqlx::query(
        "UPDATE idempotency_keys SET status_code = $3, content_type = $4, response_body = $5
          WHERE principal_id = $1 AND key = $2",
    )
    .bind(&owner)
    .bind(&key)
    .bind(status.as_u16() as i16)
    .bind(content_type)
    .bind(body.as_ref())
    .execute(&state.pool)
    .await;
    if let Err(error) = stored {
        // The work is done and the client gets its answer; a repeat after the lock
        // expires would run again, so say so loudly.
        tracing::error!(%error, "could not keep an idempotent response for replay");
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

async fn release(state: &AppState, owner: &str, key: &str) {
    let released = sqlx::query("DELETE FROM idempotency_keys WHERE principal_id = $1 AND key = $2")
        .bind(owner)
        .bind(key)
        .execute(&state.pool)
        .await;
    if let Err(error) = released {
        tracing::warn!(%error, "could not release an idempotency key; it frees itself when its lock expires");
    }
}

/// Drops expired keys (run by the maintenance loop).
pub async fn purge_expired(pool: &sqlx::PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM idempotency_keys WHERE expires_at < now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
