//! REST login sessions, kept in the database so they survive restarts and are shared by
//! every node.
//!
//! The token is a bearer credential, so only its SHA-256 is stored: a copy of the database
//! does not let anyone log in. Expiry is checked on read, against a `now` the caller may
//! pass, and expired rows are removed by [`purge_expired`], which housekeeping calls.

use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use crate::app::random_hex64;
use crate::clock::now_unix;
use crate::store::{SESSION_TTL_SECS, StoreError};

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Sessions created at or before this instant have expired as of `now`.
fn expiry_cutoff(now: i64) -> i64 {
    now.saturating_sub(SESSION_TTL_SECS)
}

pub(super) async fn create(pool: &AnyPool, app_id: &str) -> Result<String, StoreError> {
    let token = random_hex64();
    sqlx::query("INSERT INTO sessions (token_hash, app_id, created) VALUES ($1, $2, $3)")
        .bind(token_hash(&token))
        .bind(app_id)
        .bind(now_unix())
        .execute(pool)
        .await?;
    Ok(token)
}

pub(super) async fn app_at(
    pool: &AnyPool,
    token: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let app_id =
        sqlx::query_scalar("SELECT app_id FROM sessions WHERE token_hash = $1 AND created > $2")
            .bind(token_hash(token))
            .bind(expiry_cutoff(now))
            .fetch_optional(pool)
            .await?;
    Ok(app_id)
}

pub(super) async fn delete(pool: &AnyPool, token: &str) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(token_hash(token))
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn purge_expired(pool: &AnyPool, now: i64, limit: u32) -> Result<u64, StoreError> {
    let done = sqlx::query(
        "DELETE FROM sessions WHERE token_hash IN \
           (SELECT token_hash FROM sessions WHERE created <= $1 LIMIT $2)",
    )
    .bind(expiry_cutoff(now))
    .bind(i64::from(limit))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
