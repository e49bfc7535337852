//! The outbox: offline deliveries recorded before they are attempted, claimed by one node at
//! a time with a lease, and finished with an outcome.
//!
//! Claiming is one statement per backend: PostgreSQL skips rows another node has locked
//! (`FOR UPDATE SKIP LOCKED`), SQLite has a single writer and needs no such clause.

use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::store::migrations::Backend;
use crate::store::{
    DeliveryCounts, DeliveryKind, DeliveryOutcome, DeliveryRecord, DeliveryStatus, NewDelivery,
    StoreError,
};

const COLUMNS: &str = "id, delivery_id, app_id, kind, target, payload, status, attempts, \
                       next_attempt_ms, last_error, created_ms, updated_ms";

use crate::clock::now_millis as now_ms;

fn from_row(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(DeliveryRecord {
        id: row.try_get("id")?,
        delivery_id: row.try_get("delivery_id")?,
        app_id: row.try_get("app_id")?,
        kind: DeliveryKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery kind {kind:?}")))?,
        target: row.try_get("target")?,
        payload: row.try_get("payload")?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery status {status:?}")))?,
        attempts: row.try_get("attempts")?,
        next_attempt_ms: row.try_get("next_attempt_ms")?,
        last_error: row.try_get("last_error")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

pub(super) async fn enqueue(
    pool: &AnyPool,
    app_id: &str,
    deliveries: &[NewDelivery],
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    let mut out = Vec::with_capacity(deliveries.len());
    let sql = format!(
        "INSERT INTO deliveries (delivery_id, app_id, kind, target, payload, status, attempts, \
         next_attempt_ms, claimed_until, created_ms, updated_ms) \
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, 0, $6, $6) RETURNING {COLUMNS}"
    );
    for d in deliveries {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(app_id)
            .bind(d.kind.as_str())
            .bind(&d.target)
            .bind(&d.payload)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        out.push(from_row(&row)?);
    }
    tx.commit().await?;
    Ok(out)
}

pub(super) async fn claim(
    pool: &AnyPool,
    backend: Backend,
    node: &str,
    now: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE deliveries SET claimed_by = $1, claimed_until = $2 \
         WHERE id IN (SELECT id FROM deliveries \
                      WHERE status = 'pending' AND next_attempt_ms <= $3 AND claimed_until <= $3 \
                      ORDER BY next_attempt_ms, id LIMIT $4{lock}) \
         RETURNING {COLUMNS}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(node)
        .bind(now + lease_ms)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    let mut claimed: Vec<DeliveryRecord> = rows.iter().map(from_row).collect::<Result<_, _>>()?;
    claimed.sort_by_key(|d| (d.next_attempt_ms, d.id));
    Ok(claimed)
}

pub(super) async fn finish(
    pool: &AnyPool,
    id: i64,
    outcome: &DeliveryOutcome,
) -> Result<(), StoreError> {
    let now = now_ms();
    if let DeliveryOutcome::Deferred { next_attempt_ms } = outcome {
        sqlx::query(
            "UPDATE deliveries SET next_attempt_ms = $1, claimed_by = NULL, claimed_until = 0, \
             updated_ms = $2 WHERE id = $3",
        )
        .bind(*next_attempt_ms)
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?;
        return Ok(());
    }
    let (status, next, error) = match outcome {
        DeliveryOutcome::Delivered => (DeliveryStatus::Delivered, now, None),
        DeliveryOutcome::Retry {
            next_attempt_ms,
            error,
        } => (
            DeliveryStatus::Pending,
            *next_attempt_ms,
            Some(error.as_str()),
        ),
        DeliveryOutcome::Failed { error } => (DeliveryStatus::Failed, now, Some(error.as_str())),
        DeliveryOutcome::Deferred { .. } => return Ok(()),
    };
    sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = attempts + 1, next_attempt_ms = $2, \
         last_error = COALESCE($3, last_error), claimed_by = NULL, claimed_until = 0, updated_ms = $4 \
         WHERE id = $5",
    )
    .bind(status.as_str())
    .bind(next)
    .bind(error)
    .bind(now)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn pending_total(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'pending'")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get("n")?)
}

pub(super) async fn counts(pool: &AnyPool, app_id: &str) -> Result<DeliveryCounts, StoreError> {
    let rows = sqlx::query(
        "SELECT status, COUNT(*) AS n FROM deliveries WHERE app_id = $1 GROUP BY status",
    )
    .bind(app_id)
    .fetch_all(pool)
    .await?;
    let mut counts = DeliveryCounts::default();
    for row in rows {
        let status: String = row.try_get("status")?;
        let n: i64 = row.try_get("n")?;
        match DeliveryStatus::parse(&status) {
            Some(DeliveryStatus::Pending) => counts.pending = n,
            Some(DeliveryStatus::Delivered) => counts.delivered = n,
            Some(DeliveryStatus::Failed) => counts.failed = n,
            None => {
                return Err(StoreError::Corrupt(format!(
                    "unknown delivery status {status:?}"
                )));
            }
        }
    }
    Ok(counts)
}

pub(super) async fn list(
    pool: &AnyPool,
    app_id: &str,
    status: Option<DeliveryStatus>,
    limit: u32,
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let rows = match status {
        Some(status) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM deliveries WHERE app_id = $1 AND status = $2 ORDER BY id DESC LIMIT $3"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(app_id)
                .bind(status.as_str())
                .bind(super::page_limit(limit))
                .fetch_all(pool)
                .await?
        }
        None => {
            let sql = format!(
                "SELECT {COLUMNS} FROM deliveries WHERE app_id = $1 ORDER BY id DESC LIMIT $2"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(app_id)
                .bind(super::page_limit(limit))
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(from_row).collect()
}

pub(super) async fn by_ids(
    pool: &AnyPool,
    app_id: &str,
    ids: &[i64],
) -> Result<Vec<DeliveryRecord>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT {COLUMNS} FROM deliveries WHERE app_id = $1 AND id IN ({}) ORDER BY id",
            super::placeholders(2, chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(app_id);
        for id in chunk {
            query = query.bind(*id);
        }
        for row in query.fetch_all(pool).await? {
            out.push(from_row(&row)?);
        }
    }
    Ok(out)
}

/// One batch of housekeeping: finished deliveries (never pending ones) past their age.
pub(super) async fn delete_finished(
    pool: &AnyPool,
    app_id: &str,
    before_ms: i64,
    limit: u32,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for status in [DeliveryStatus::Delivered, DeliveryStatus::Failed] {
        let remaining = u64::from(limit).saturating_sub(deleted);
        if remaining == 0 {
            break;
        }
        deleted += sqlx::query(
            "DELETE FROM deliveries WHERE id IN \
               (SELECT id FROM deliveries \
                WHERE app_id = $1 AND status = $2 AND updated_ms < $3 LIMIT $4)",
        )
        .bind(app_id)
        .bind(status.as_str())
        .bind(before_ms)
        .bind(i64::try_from(remaining).unwrap_or(i64::MAX))
        .execute(pool)
        .await?
        .rows_affected();
    }
    Ok(deleted)
}

/// Due now and pending again. A claim in progress is left alone, so a delivery being
/// attempted is never attempted twice at once.
pub(super) async fn retry_now(
    pool: &AnyPool,
    app_id: &str,
    id: i64,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let now = now_ms();
    let sql = format!(
        "UPDATE deliveries SET status = 'pending', next_attempt_ms = $1, updated_ms = $1 \
         WHERE app_id = $2 AND id = $3 AND status IN ('pending', 'failed') RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(app_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn give_up(
    pool: &AnyPool,
    app_id: &str,
    id: i64,
    reason: &str,
) -> Result<Option<DeliveryRecord>, StoreError> {
    let sql = format!(
        "UPDATE deliveries SET status = 'failed', last_error = $1, updated_ms = $2 \
         WHERE app_id = $3 AND id = $4 AND status = 'pending' RETURNING {COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(reason)
        .bind(now_ms())
        .bind(app_id)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}
