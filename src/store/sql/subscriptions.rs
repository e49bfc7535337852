//! Personal-channel aliases: which channels `personal-{user}` stands for.
//!
//! Unlike Pushi, which checked for a duplicate before inserting, a unique index on
//! `(app_id, user_id, event)` makes "create or return the existing one" safe when two
//! requests (or two nodes) race: the loser's insert does nothing and it reads the winner's row.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::Filter;
use crate::clock::now_unix;
use crate::store::{StoreError, SubscriptionRecord};

const SUBSCRIPTION_COLUMNS: &str = "id, app_id, user_id, event, created, modified";

/// Attempts at "insert, else read" before giving up: a row can vanish between the two only
/// if deleted concurrently, so a second attempt nearly always settles it.
const CREATE_ATTEMPTS: usize = 3;

fn subscription_from_row(row: &AnyRow) -> Result<SubscriptionRecord, StoreError> {
    Ok(SubscriptionRecord {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        user_id: row.try_get("user_id")?,
        event: row.try_get("event")?,
        created: row.try_get("created")?,
        modified: row.try_get("modified")?,
    })
}

pub(super) async fn create(
    pool: &AnyPool,
    app_id: &str,
    user_id: &str,
    event: &str,
) -> Result<(SubscriptionRecord, bool), StoreError> {
    for _ in 0..CREATE_ATTEMPTS {
        if let Some(created) = insert_new(pool, app_id, user_id, event).await? {
            return Ok((created, true));
        }
        let existing = list(pool, app_id, Some(user_id), Some(event)).await?;
        if let Some(existing) = existing.into_iter().next() {
            return Ok((existing, false));
        }
    }
    Err(StoreError::Conflict(format!(
        "a subscription of {user_id:?} to {event:?} being deleted concurrently"
    )))
}

/// Inserts the subscription unless it exists; returns it only if inserted.
async fn insert_new(
    pool: &AnyPool,
    app_id: &str,
    user_id: &str,
    event: &str,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    let sql = format!(
        "INSERT INTO subscriptions (app_id, user_id, event, created, modified) \
         VALUES ($1, $2, $3, $4, $4) \
         ON CONFLICT (app_id, user_id, event) DO NOTHING RETURNING {SUBSCRIPTION_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .bind(user_id)
        .bind(event)
        .bind(now_unix())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

pub(super) async fn list(
    pool: &AnyPool,
    app_id: &str,
    user_id: Option<&str>,
    event: Option<&str>,
) -> Result<Vec<SubscriptionRecord>, StoreError> {
    let filter = Filter::default()
        .eq("app_id", app_id)
        .eq_opt("user_id", user_id)
        .eq_opt("event", event);
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions{} ORDER BY id",
        filter.where_sql()
    );
    let rows = filter.query(sql).fetch_all(pool).await?;
    rows.iter().map(subscription_from_row).collect()
}

pub(super) async fn delete(
    pool: &AnyPool,
    app_id: &str,
    user_id: &str,
    event: &str,
) -> Result<Option<SubscriptionRecord>, StoreError> {
    let sql = format!(
        "DELETE FROM subscriptions WHERE app_id = $1 AND user_id = $2 AND event = $3 \
         RETURNING {SUBSCRIPTION_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .bind(user_id)
        .bind(event)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(subscription_from_row).transpose()
}

pub(super) async fn channels_of(
    pool: &AnyPool,
    app_id: &str,
    user_id: &str,
) -> Result<Vec<String>, StoreError> {
    let channels = sqlx::query_scalar(
        "SELECT event FROM subscriptions WHERE app_id = $1 AND user_id = $2 ORDER BY id",
    )
    .bind(app_id)
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(channels)
}

pub(super) async fn users_of(
    pool: &AnyPool,
    app_id: &str,
    channel: &str,
) -> Result<Vec<String>, StoreError> {
    let users = sqlx::query_scalar(
        "SELECT user_id FROM subscriptions WHERE app_id = $1 AND event = $2 ORDER BY id",
    )
    .bind(app_id)
    .bind(channel)
    .fetch_all(pool)
    .await?;
    Ok(users)
}
