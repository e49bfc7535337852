//! Versioned schema changes, applied in order at start-up.
//!
//! Each migration has one SQL text per backend (their DDL differs: `AUTOINCREMENT` against
//! `BIGSERIAL`, and so on); applied versions are recorded in `pushi_migrations`, so a start
//! only runs what is new. Every step runs under a lock, so processes starting at once on the
//! same database (two nodes, or the server and the CLI) take turns instead of failing: on
//! PostgreSQL an advisory lock (even `CREATE TABLE IF NOT EXISTS` races there), on SQLite the
//! write lock taken up front with `BEGIN IMMEDIATE` (a deferred transaction that reads and then
//! writes fails with "database is locked" instead of waiting).

use sqlx::{Any, AnyPool, Transaction};

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// One migration: the same version and name for both backends, each with its own SQL.
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../../migrations/sqlite/", $file)),
            postgres: include_str!(concat!("../../migrations/postgres/", $file)),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "apps", "0001_apps.sql"),
    migration!(2, "events", "0002_events.sql"),
    migration!(3, "subscriptions", "0003_subscriptions.sql"),
    migration!(4, "sessions", "0004_sessions.sql"),
    migration!(5, "targets", "0005_targets.sql"),
    migration!(6, "deliveries", "0006_deliveries.sql"),
    migration!(7, "retention", "0007_retention.sql"),
];

/// An arbitrary constant naming pushi's migration lock on PostgreSQL.
const PG_MIGRATION_LOCK: i64 = 0x7075_7368_6900;

/// The table of applied versions; created under the lock like any migration.
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS pushi_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// A transaction holding the migration lock until it ends.
async fn begin_locked(
    pool: &AnyPool,
    backend: Backend,
) -> Result<Transaction<'static, Any>, StoreError> {
    match backend {
        Backend::Sqlite => Ok(pool.begin_with("BEGIN IMMEDIATE").await?),
        Backend::Postgres => {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        }
    }
}

pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    let mut tx = begin_locked(pool, backend).await?;
    sqlx::raw_sql(LEDGER).execute(&mut *tx).await?;
    tx.commit().await?;
    for m in MIGRATIONS {
        apply(pool, backend, m).await?;
    }
    Ok(())
}

/// Applies one migration unless it already was.
async fn apply(pool: &AnyPool, backend: Backend, m: &Migration) -> Result<(), StoreError> {
    let mut tx = begin_locked(pool, backend).await?;
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT version FROM pushi_migrations WHERE version = $1")
            .bind(m.version)
            .fetch_optional(&mut *tx)
            .await?;
    if applied.is_some() {
        return Ok(());
    }
    let sql = match backend {
        Backend::Sqlite => m.sqlite,
        Backend::Postgres => m.postgres,
    };
    sqlx::raw_sql(sql).execute(&mut *tx).await?;
    sqlx::query("INSERT INTO pushi_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
        .bind(m.version)
        .bind(m.name)
        .bind(crate::clock::now_unix())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(version = m.version, name = m.name, "applied migration");
    Ok(())
}
