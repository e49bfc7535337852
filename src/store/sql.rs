//! The SQL store, shared by SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Queries use `$N` placeholders, which both backends understand, and only types both map the
//! same way (text, 64-bit integers, doubles): booleans are stored as 0/1 integers.

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::migrations::{self, Backend};
use super::{Store, StoreError};
use crate::apps::App;

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

/// Accepts `sqlite://FILE`, `sqlite:FILE`, `sqlite::memory:` and `postgres[ql]://...`.
fn classify(url: &str) -> Result<Backend, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}

impl SqlStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = classify(url)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut url = url.to_owned();
        if backend == Backend::Sqlite && !in_memory && !url.contains("mode=") {
            // Create the database file on first start.
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str("mode=rwc");
        }
        let mut options = AnyPoolOptions::new();
        options = match backend {
            // Each connection to `:memory:` is its own database: keep exactly one.
            Backend::Sqlite if in_memory => options.max_connections(1).min_connections(1),
            Backend::Sqlite => options.max_connections(4),
            Backend::Postgres => options.max_connections(16),
        };
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                         PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;",
                    )
                    .execute(conn)
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        migrations::run(&pool, backend).await?;
        Ok(Self { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

const APP_COLUMNS: &str =
    "id, ident, app_key, secret, name, enabled, settings, description, created, modified";

fn app_from_row(row: &AnyRow) -> Result<App, StoreError> {
    let settings: String = row.try_get("settings")?;
    Ok(App {
        id: row.try_get::<i64, _>("id")?.to_string(),
        ident: row.try_get("ident")?,
        key: row.try_get("app_key")?,
        secret: row.try_get("secret")?,
        name: row.try_get("name")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        settings: serde_json::from_str(&settings)
            .map_err(|e| StoreError::Corrupt(format!("app settings: {e}")))?,
        description: row.try_get("description")?,
        created: row.try_get("created")?,
        modified: row.try_get("modified")?,
    })
}

fn settings_json(app: &App) -> String {
    serde_json::to_string(&app.settings).unwrap_or_else(|_| "{}".into())
}

/// Unique-constraint violations become [`StoreError::Conflict`] naming what clashed.
fn conflict_or(e: sqlx::Error, what: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(what.to_owned())
        }
        _ => StoreError::Database(e),
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn create_app(&self, mut app: App) -> Result<App, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO apps (ident, app_key, secret, name, enabled, settings, description, created, modified) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .bind(&app.ident)
        .bind(&app.key)
        .bind(&app.secret)
        .bind(&app.name)
        .bind(i64::from(app.enabled))
        .bind(settings_json(&app))
        .bind(&app.description)
        .bind(app.created)
        .bind(app.modified)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| conflict_or(e, &format!("an app named {:?}", app.name)))?;
        app.id = id.to_string();
        Ok(app)
    }

    async fn update_app(&self, app: &App) -> Result<(), StoreError> {
        let Ok(id) = app.id.parse::<i64>() else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE apps SET name = $1, enabled = $2, settings = $3, description = $4, modified = $5 \
             WHERE id = $6",
        )
        .bind(&app.name)
        .bind(i64::from(app.enabled))
        .bind(settings_json(app))
        .bind(&app.description)
        .bind(app.modified)
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict_or(e, &format!("an app named {:?}", app.name)))?;
        Ok(())
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(app_from_row).collect()
    }

    async fn app_by_id(&self, id: &str) -> Result<Option<App>, StoreError> {
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    async fn app_by_key(&self, key: &str) -> Result<Option<App>, StoreError> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE app_key = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(app_from_row).transpose()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}
