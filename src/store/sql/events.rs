//! Persisted events and their associations with subscribed users.
//!
//! Publishes are saved by the group-commit writer ([`super::writer`]): the events of every
//! publish waiting, with multi-row inserts, then every association in a single
//! `INSERT ... SELECT`, so the cost does not grow with round trips per event or subscriber.
//! Associations keep Pushi's per-publish dedup: a user subscribed to several of a publish's
//! channels is associated with its first event only. A publish's events get ids in slice
//! order within the transaction, so "first" is the smallest id.
//!
//! Housekeeping deletes events in small batches: it picks a batch with one read (no write
//! lock held), then deletes those events and their associations by key in one short
//! transaction, so a publish never waits long behind it.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{page_limit, placeholders};
use crate::store::{EventRecord, ExpiredEvents, NewEvent, StoreError};

/// Keys per `IN (...)` list, well under both backends' bound-parameter limits.
const KEYS_PER_QUERY: usize = 500;

const EVENT_COLUMNS: &str =
    "e.id, e.app_id, e.mid, e.channel, e.event, e.owner_id, e.timestamp, e.data, e.created";

fn event_from_row(row: &AnyRow) -> Result<EventRecord, StoreError> {
    Ok(EventRecord {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        mid: row.try_get("mid")?,
        channel: row.try_get("channel")?,
        event: row.try_get("event")?,
        owner_id: row.try_get("owner_id")?,
        timestamp: row.try_get("timestamp")?,
        data: row.try_get("data")?,
        created: row.try_get("created")?,
    })
}

/// The record of an event saved with `id` at `created`.
pub(super) fn record(id: i64, app_id: &str, event: &NewEvent, created: i64) -> EventRecord {
    EventRecord {
        id,
        app_id: app_id.to_owned(),
        mid: event.mid.clone(),
        channel: event.channel.clone(),
        event: event.event.clone(),
        owner_id: event.owner_id.clone(),
        timestamp: event.timestamp,
        data: event.data.clone(),
        created,
    }
}

pub(super) async fn channel_history(
    pool: &AnyPool,
    app_id: &str,
    channel: &str,
    skip: u32,
    count: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.app_id = $1 AND e.channel = $2 \
         ORDER BY e.id DESC LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .bind(channel)
        .bind(page_limit(count))
        .bind(i64::from(skip))
        .fetch_all(pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn personal_history(
    pool: &AnyPool,
    app_id: &str,
    user_id: &str,
    skip: u32,
    count: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM associations a \
         JOIN events e ON e.app_id = a.app_id AND e.mid = a.mid \
         WHERE a.app_id = $1 AND a.user_id = $2 \
         ORDER BY a.id DESC LIMIT $3 OFFSET $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .bind(user_id)
        .bind(page_limit(count))
        .bind(i64::from(skip))
        .fetch_all(pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

pub(super) async fn recent(
    pool: &AnyPool,
    app_id: &str,
    count: u32,
) -> Result<Vec<EventRecord>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.app_id = $1 ORDER BY e.id DESC LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .bind(page_limit(count))
        .fetch_all(pool)
        .await?;
    rows.iter().map(event_from_row).collect()
}

/// One batch of housekeeping: up to `limit` events `which` selects, oldest first.
pub(super) async fn delete(
    pool: &AnyPool,
    app_id: &str,
    which: ExpiredEvents<'_>,
    limit: u32,
) -> Result<u64, StoreError> {
    let limit = i64::from(limit);
    let batch: Vec<(i64, String)> = match which {
        ExpiredEvents::SavedBefore(cutoff) => {
            let rows = sqlx::query(
                "SELECT id, mid, created FROM events WHERE app_id = $1 ORDER BY id LIMIT $2",
            )
            .bind(app_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let mut batch = Vec::with_capacity(rows.len());
            for row in rows {
                if row.try_get::<i64, _>("created")? >= cutoff {
                    break;
                }
                batch.push((row.try_get("id")?, row.try_get("mid")?));
            }
            batch
        }
        ExpiredEvents::OnChannelThrough {
            channel,
            through_id,
        } => {
            sqlx::query_as(
                "SELECT id, mid FROM events WHERE app_id = $1 AND channel = $2 AND id <= $3 \
             ORDER BY id LIMIT $4",
            )
            .bind(app_id)
            .bind(channel)
            .bind(through_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    if batch.is_empty() {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    let mut deleted = 0;
    for chunk in batch.chunks(KEYS_PER_QUERY) {
        let sql = format!(
            "DELETE FROM associations WHERE app_id = $1 AND mid IN ({})",
            placeholders(2, chunk.len())
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app_id);
        chunk
            .iter()
            .fold(query, |q, (_, mid)| q.bind(mid.as_str()))
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "DELETE FROM events WHERE app_id = $1 AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app_id);
        deleted += chunk
            .iter()
            .fold(query, |q, (id, _)| q.bind(*id))
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(deleted)
}

pub(super) async fn newest_id(pool: &AnyPool, app_id: &str) -> Result<Option<i64>, StoreError> {
    let id = sqlx::query_scalar("SELECT MAX(id) FROM events WHERE app_id = $1")
        .bind(app_id)
        .fetch_one(pool)
        .await?;
    Ok(id)
}

/// Only channels written since `after_id` are examined, so a sweep costs what was published
/// since the last one: listing them reads only the new events, and each is then one index
/// probe of at most `keep + 1` entries. The probes are separate statements on purpose: as one
/// correlated query, PostgreSQL's estimate of it crosses the JIT threshold, and compiling
/// took longer than running it.
pub(super) async fn crowded_channels(
    pool: &AnyPool,
    app_id: &str,
    after_id: i64,
    keep: u64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let keep = i64::try_from(keep).unwrap_or(i64::MAX);
    let written: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT channel FROM events WHERE app_id = $1 AND id > $2 ORDER BY channel",
    )
    .bind(app_id)
    .bind(after_id)
    .fetch_all(pool)
    .await?;
    let mut crowded = Vec::new();
    for channel in written {
        let beyond: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM events WHERE app_id = $1 AND channel = $2 \
             ORDER BY id DESC LIMIT 1 OFFSET $3",
        )
        .bind(app_id)
        .bind(&channel)
        .bind(keep)
        .fetch_optional(pool)
        .await?;
        if let Some(through_id) = beyond {
            crowded.push((channel, through_id));
        }
    }
    Ok(crowded)
}
