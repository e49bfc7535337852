//! Offline-delivery targets: webhook URLs, email addresses, APN tokens and Web Push
//! endpoints, each registered for a channel.
//!
//! As with subscriptions, a unique index on `(app_id, kind, target, event)` makes creation
//! idempotent under races. The kind is stored as its name so the table reads plainly.

use std::collections::HashSet;

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{Filter, placeholders};
use crate::clock::now_unix;
use crate::store::{NewTarget, StoreError, TargetCount, TargetKind, TargetRecord};

const TARGET_COLUMNS: &str = "id, app_id, kind, target, event, p256dh, auth, created";

/// Channels per `IN (...)` list, well under both backends' bound-parameter limits.
const CHANNELS_PER_QUERY: usize = 500;

/// See the subscriptions module: attempts at "insert, else read".
const CREATE_ATTEMPTS: usize = 3;

fn target_from_row(row: &AnyRow) -> Result<TargetRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(TargetRecord {
        id: row.try_get("id")?,
        app_id: row.try_get("app_id")?,
        kind: TargetKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown target kind {kind:?}")))?,
        target: row.try_get("target")?,
        event: row.try_get("event")?,
        p256dh: row.try_get("p256dh")?,
        auth: row.try_get("auth")?,
        created: row.try_get("created")?,
    })
}

pub(super) async fn create(
    pool: &AnyPool,
    app_id: &str,
    new: NewTarget,
) -> Result<(TargetRecord, bool), StoreError> {
    for _ in 0..CREATE_ATTEMPTS {
        if let Some(created) = insert_new(pool, app_id, &new).await? {
            return Ok((created, true));
        }
        let existing = list(pool, app_id, new.kind, Some(&new.target), Some(&new.event)).await?;
        if let Some(existing) = existing.into_iter().next() {
            return Ok((existing, false));
        }
    }
    Err(StoreError::Conflict(format!(
        "a {} target {:?} on {:?} being deleted concurrently",
        new.kind.as_str(),
        new.target,
        new.event
    )))
}

/// Inserts the target unless it exists; returns it only if inserted.
async fn insert_new(
    pool: &AnyPool,
    app_id: &str,
    new: &NewTarget,
) -> Result<Option<TargetRecord>, StoreError> {
    let sql = format!(
        "INSERT INTO targets (app_id, kind, target, event, p256dh, auth, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (app_id, kind, target, event) DO NOTHING RETURNING {TARGET_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .bind(new.kind.as_str())
        .bind(&new.target)
        .bind(&new.event)
        .bind(&new.p256dh)
        .bind(&new.auth)
        .bind(now_unix())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(target_from_row).transpose()
}

pub(super) async fn list(
    pool: &AnyPool,
    app_id: &str,
    kind: TargetKind,
    target: Option<&str>,
    event: Option<&str>,
) -> Result<Vec<TargetRecord>, StoreError> {
    let filter = Filter::default()
        .eq("app_id", app_id)
        .eq("kind", kind.as_str())
        .eq_opt("target", target)
        .eq_opt("event", event);
    let sql = format!(
        "SELECT {TARGET_COLUMNS} FROM targets{} ORDER BY id",
        filter.where_sql()
    );
    let rows = filter.query(sql).fetch_all(pool).await?;
    rows.iter().map(target_from_row).collect()
}

pub(super) async fn delete(
    pool: &AnyPool,
    app_id: &str,
    kind: TargetKind,
    target: &str,
    event: Option<&str>,
) -> Result<Vec<TargetRecord>, StoreError> {
    let filter = Filter::default()
        .eq("app_id", app_id)
        .eq("kind", kind.as_str())
        .eq("target", target)
        .eq_opt("event", event);
    let sql = format!(
        "DELETE FROM targets{} RETURNING {TARGET_COLUMNS}",
        filter.where_sql()
    );
    let rows = filter.query(sql).fetch_all(pool).await?;
    let mut deleted = rows
        .iter()
        .map(target_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    // RETURNING comes back in no particular order.
    deleted.sort_by_key(|t| t.id);
    Ok(deleted)
}

pub(super) async fn for_channels(
    pool: &AnyPool,
    app_id: &str,
    channels: &[String],
) -> Result<Vec<TargetRecord>, StoreError> {
    let mut seen = HashSet::new();
    let channels: Vec<&str> = channels
        .iter()
        .map(String::as_str)
        .filter(|c| seen.insert(*c))
        .collect();
    let mut found = Vec::new();
    for chunk in channels.chunks(CHANNELS_PER_QUERY) {
        let sql = format!(
            "SELECT {TARGET_COLUMNS} FROM targets WHERE app_id = $1 AND event IN ({}) ORDER BY id",
            placeholders(2, chunk.len())
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app_id);
        let rows = chunk
            .iter()
            .fold(query, |q, c| q.bind(*c))
            .fetch_all(pool)
            .await?;
        for row in &rows {
            found.push(target_from_row(row)?);
        }
    }
    found.sort_by_key(|t| t.id);
    Ok(found)
}

pub(super) async fn counts(pool: &AnyPool) -> Result<Vec<TargetCount>, StoreError> {
    let rows = sqlx::query(
        "SELECT kind, COUNT(*) AS n, COUNT(DISTINCT app_id) AS apps FROM targets GROUP BY kind",
    )
    .fetch_all(pool)
    .await?;
    let mut counts = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: String = row.try_get("kind")?;
        counts.push(TargetCount {
            kind: TargetKind::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown target kind {kind:?}")))?,
            targets: row.try_get("n")?,
            apps: row.try_get("apps")?,
        });
    }
    Ok(counts)
}

pub(super) async fn all(pool: &AnyPool, app_id: &str) -> Result<Vec<TargetRecord>, StoreError> {
    let sql = format!("SELECT {TARGET_COLUMNS} FROM targets WHERE app_id = $1 ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(app_id)
        .fetch_all(pool)
        .await?;
    rows.iter().map(target_from_row).collect()
}
