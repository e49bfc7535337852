//! Versioned schema changes, applied in order at start-up.
//!
//! Each migration has one SQL text per backend (their DDL differs: `AUTOINCREMENT` against
//! `BIGSERIAL`, and so on); applied versions are recorded in `pushi_migrations`, so a start
//! only runs what is new. On PostgreSQL an advisory lock keeps two nodes starting at once from
//! racing.

use sqlx::AnyPool;

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

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "apps",
    sqlite: include_str!("../../migrations/sqlite/0001_apps.sql"),
    postgres: include_str!("../../migrations/postgres/0001_apps.sql"),
}];

/// An arbitrary constant naming pushi's migration lock on PostgreSQL.
const PG_MIGRATION_LOCK: i64 = 0x7075_7368_6900;

pub async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS pushi_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(pool)
    .await?;
    for m in MIGRATIONS {
        let mut tx = pool.begin().await?;
        if backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(PG_MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM pushi_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
        if applied.is_some() {
            continue;
        }
        let sql = match backend {
            Backend::Sqlite => m.sqlite,
            Backend::Postgres => m.postgres,
        };
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO pushi_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(crate::apps::now_unix())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}
