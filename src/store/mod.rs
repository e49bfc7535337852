//! Durable state: apps now; events, subscriptions and deliveries as later features need them.
//!
//! The [`Store`] trait is the seam between the hub and a database. One SQL implementation
//! ([`sql::SqlStore`]) serves both backends through sqlx's `Any` driver: SQLite (the embedded
//! default, a file in WAL mode) and PostgreSQL (for several nodes). Only the schema differs
//! per backend, so each has its own migration files and the queries are shared.

pub mod migrations;
pub mod sql;

use async_trait::async_trait;

use crate::apps::App;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://...")]
    UnsupportedUrl(String),
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Saves a new app and returns it with its numeric id assigned.
    async fn create_app(&self, app: App) -> Result<App, StoreError>;
    async fn update_app(&self, app: &App) -> Result<(), StoreError>;
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    async fn app_by_id(&self, id: &str) -> Result<Option<App>, StoreError>;
    async fn app_by_key(&self, key: &str) -> Result<Option<App>, StoreError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Opens the store a database URL names and brings its schema up to date.
pub async fn open(url: &str) -> Result<sql::SqlStore, StoreError> {
    sql::SqlStore::connect(url).await
}
