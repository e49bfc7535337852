//! REST login sessions, kept in the database so they survive restarts and are shared by
//! every node, and cached in memory so a request does not read the database to learn its app.
//!
//! The token is a bearer credential, so only its SHA-256 is stored (and used as the cache
//! key): a copy of the database does not let anyone log in. Expiry is checked on read,
//! against a `now` the caller may pass, and expired rows are removed by [`purge_expired`],
//! which housekeeping calls.
//!
//! The cache ([`SessionCache`]) holds sessions this node found or created. An entry is used
//! for at most [`RECHECK`] before the database is asked again, so a logout or purge made by
//! another node (or the CLI) takes effect here within that time; one made through this store
//! takes effect at once. Unknown tokens are never cached (a client cannot fill the cache with
//! guesses), and the cache holds at most [`CACHE_SESSIONS`] entries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;

use crate::app::random_hex64;
use crate::clock::now_unix;
use crate::store::{SESSION_TTL_SECS, StoreError};

/// How long a cached session is trusted before the database is asked again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// Sessions cached at most; when full, stale and expired entries go first, then all of them.
pub const CACHE_SESSIONS: usize = 100_000;

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Sessions created at or before this instant have expired as of `now`.
fn expiry_cutoff(now: i64) -> i64 {
    now.saturating_sub(SESSION_TTL_SECS)
}

struct Cached {
    app_id: String,
    /// When the session was created (unix seconds): it expires on its own schedule whatever
    /// the cache holds.
    created: i64,
    /// When the database last confirmed it.
    checked: Instant,
}

/// Known sessions by token hash. See the module documentation for how long an entry is used.
#[derive(Default)]
pub(super) struct SessionCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl SessionCache {
    fn get(&self, hash: &str, now: i64) -> Option<String> {
        let entries = self.entries.lock();
        let cached = entries.get(hash)?;
        (cached.created > expiry_cutoff(now) && cached.checked.elapsed() < RECHECK)
            .then(|| cached.app_id.clone())
    }

    fn put(&self, hash: String, app_id: String, created: i64) {
        let mut entries = self.entries.lock();
        if entries.len() >= CACHE_SESSIONS && !entries.contains_key(&hash) {
            let cutoff = expiry_cutoff(now_unix());
            entries.retain(|_, c| c.created > cutoff && c.checked.elapsed() < RECHECK);
            if entries.len() >= CACHE_SESSIONS {
                entries.clear();
            }
        }
        let checked = Instant::now();
        entries.insert(
            hash,
            Cached {
                app_id,
                created,
                checked,
            },
        );
    }

    fn forget(&self, hash: &str) {
        self.entries.lock().remove(hash);
    }

    /// Forgets every session expired as of `now`: what a purge as of `now` deletes.
    fn forget_expired(&self, now: i64) {
        let cutoff = expiry_cutoff(now);
        self.entries.lock().retain(|_, c| c.created > cutoff);
    }
}

pub(super) async fn create(
    pool: &AnyPool,
    cache: &SessionCache,
    app_id: &str,
) -> Result<String, StoreError> {
    let token = random_hex64();
    let hash = token_hash(&token);
    let created = now_unix();
    sqlx::query("INSERT INTO sessions (token_hash, app_id, created) VALUES ($1, $2, $3)")
        .bind(&hash)
        .bind(app_id)
        .bind(created)
        .execute(pool)
        .await?;
    cache.put(hash, app_id.to_owned(), created);
    Ok(token)
}

pub(super) async fn app_at(
    pool: &AnyPool,
    cache: &SessionCache,
    token: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    let hash = token_hash(token);
    if let Some(app_id) = cache.get(&hash, now) {
        return Ok(Some(app_id));
    }
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT app_id, created FROM sessions WHERE token_hash = $1")
            .bind(&hash)
            .fetch_optional(pool)
            .await?;
    match row {
        Some((app_id, created)) => {
            cache.put(hash, app_id.clone(), created);
            Ok((created > expiry_cutoff(now)).then_some(app_id))
        }
        None => {
            cache.forget(&hash);
            Ok(None)
        }
    }
}

pub(super) async fn delete(
    pool: &AnyPool,
    cache: &SessionCache,
    token: &str,
) -> Result<bool, StoreError> {
    let hash = token_hash(token);
    cache.forget(&hash);
    let done = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(&hash)
        .execute(pool)
        .await?;
    // Again: a read that raced the delete may have put it back.
    cache.forget(&hash);
    Ok(done.rows_affected() > 0)
}

pub(super) async fn purge_expired(
    pool: &AnyPool,
    cache: &SessionCache,
    now: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    cache.forget_expired(now);
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
