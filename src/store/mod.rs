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

// ---- TEMPORARY compile shim for the wip branch; replaced by the real store API ----
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub mid: String,
    pub channel: String,
    pub event: String,
    pub owner_id: Option<String>,
    pub timestamp: f64,
    pub data: String,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRecord {
    pub id: i64,
    pub app_id: String,
    pub mid: String,
    pub channel: String,
    pub event: String,
    pub owner_id: Option<String>,
    pub timestamp: f64,
    pub data: String,
    pub created: i64,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubscriptionRecord {
    pub id: i64,
    pub app_id: String,
    pub user_id: String,
    pub event: String,
    pub created: i64,
    pub modified: i64,
}
#[async_trait]
pub trait ShimStore {
    async fn save_events(
        &self,
        app_id: &str,
        events: &[NewEvent],
    ) -> Result<Vec<EventRecord>, StoreError>;
    async fn channel_history(
        &self,
        app_id: &str,
        channel: &str,
        skip: u32,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    async fn personal_history(
        &self,
        app_id: &str,
        user_id: &str,
        skip: u32,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    async fn subscribed_channels(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Vec<String>, StoreError>;
    async fn recent_events(&self, app_id: &str, count: u32)
    -> Result<Vec<EventRecord>, StoreError>;
    async fn create_session(&self, app_id: &str) -> Result<String, StoreError>;
    async fn session_app(&self, token: &str) -> Result<Option<String>, StoreError>;
    async fn delete_session(&self, token: &str) -> Result<(), StoreError>;
    async fn create_subscription(
        &self,
        app_id: &str,
        user_id: &str,
        event: &str,
    ) -> Result<(SubscriptionRecord, bool), StoreError>;
    async fn list_subscriptions(
        &self,
        app_id: &str,
        user_id: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
    async fn delete_subscription(
        &self,
        app_id: &str,
        user_id: &str,
        event: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError>;
}
#[async_trait]
impl ShimStore for std::sync::Arc<dyn Store> {
    async fn save_events(&self, _: &str, _: &[NewEvent]) -> Result<Vec<EventRecord>, StoreError> {
        unimplemented!()
    }
    async fn channel_history(
        &self,
        _: &str,
        _: &str,
        _: u32,
        _: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        unimplemented!()
    }
    async fn personal_history(
        &self,
        _: &str,
        _: &str,
        _: u32,
        _: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        unimplemented!()
    }
    async fn subscribed_channels(&self, _: &str, _: &str) -> Result<Vec<String>, StoreError> {
        unimplemented!()
    }
    async fn recent_events(&self, _: &str, _: u32) -> Result<Vec<EventRecord>, StoreError> {
        unimplemented!()
    }
    async fn create_session(&self, _: &str) -> Result<String, StoreError> {
        unimplemented!()
    }
    async fn session_app(&self, _: &str) -> Result<Option<String>, StoreError> {
        unimplemented!()
    }
    async fn delete_session(&self, _: &str) -> Result<(), StoreError> {
        unimplemented!()
    }
    async fn create_subscription(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<(SubscriptionRecord, bool), StoreError> {
        unimplemented!()
    }
    async fn list_subscriptions(
        &self,
        _: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        unimplemented!()
    }
    async fn delete_subscription(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        unimplemented!()
    }
}
