//! The SQL store, shared by SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Queries use `$N` placeholders, which both backends understand, and only types both map the
//! same way (text, 64-bit integers, doubles): booleans are stored as 0/1 integers. Each
//! submodule holds the queries of one kind of record as free functions over the pool; the
//! [`Store`] implementation here only routes to them.

mod apps;
mod deliveries;
mod events;
mod sessions;
mod subscriptions;
mod targets;
pub mod writer;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyConnection, AnyPool, Connection, Row};

use super::migrations::{self, Backend};
use super::{
    DeliveryCounts, DeliveryOutcome, DeliveryRecord, DeliveryStatus, EventRecord, ExpiredEvents,
    NewDelivery, NewEvent, NewTarget, Store, StoreError, SubscriptionRecord, TargetCount,
    TargetKind, TargetRecord,
};
use crate::app::App;

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// The URL of a SQLite file (not `:memory:`), for the checkpoint on close.
    sqlite_file_url: Option<String>,
    /// Saves persisted publishes, several per transaction (group commit).
    writer: writer::EventWriter,
    /// Sessions this store found or created, so a request need not read them again.
    sessions: sessions::SessionCache,
}

/// The settings every SQLite connection gets: wait for the single writer instead of failing,
/// write-ahead logging (readers never block the writer), and durable commits at the WAL's
/// usual cost.
pub(super) const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout=5000; PRAGMA journal_mode=WAL; \
                              PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;";

/// How long closing waits for the writes in flight to finish.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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

/// The file a `sqlite:` URL names, as written, for messages.
fn sqlite_path(url: &str) -> &str {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest)
}

/// What went wrong, in the database's own words where it gave any.
fn describe(e: &StoreError) -> String {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => match db.code() {
            Some(code) => format!("{} (SQLite error {code})", db.message()),
            None => db.message().to_owned(),
        },
        StoreError::Database(e) => e.to_string(),
        other => other.to_string(),
    }
}

impl SqlStore {
    /// Opens the database and brings its schema up to date. A SQLite file that cannot be
    /// opened or read (garbage, truncated, no permission) is a [`StoreError::Unusable`]
    /// naming the file, at once: it is probed on one connection before the pool exists,
    /// because the pool would retry a failing connection until its 30 s timeout and report
    /// only "pool timed out".
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = classify(url)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if backend == Backend::Postgres || in_memory {
            return Self::open(url.to_owned(), backend, in_memory).await;
        }
        let mut file_url = url.to_owned();
        if !file_url.contains("mode=") {
            // Create the database file on first start.
            file_url.push_str(if file_url.contains('?') { "&" } else { "?" });
            file_url.push_str("mode=rwc");
        }
        let unusable = |e: StoreError| StoreError::Unusable {
            file: sqlite_path(url).to_owned(),
            reason: describe(&e),
        };
        probe_sqlite(&file_url).await.map_err(unusable)?;
        Self::open(file_url, backend, false).await.map_err(unusable)
    }

    async fn open(url: String, backend: Backend, in_memory: bool) -> Result<Self, StoreError> {
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
                    sqlx::raw_sql(SQLITE_PRAGMAS).execute(conn).await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        migrations::run(&pool, backend).await?;
        let sqlite_file_url = (backend == Backend::Sqlite && !in_memory).then_some(url);
        let writer_file = sqlite_file_url.as_deref().map(sqlite_path);
        let writer = writer::EventWriter::start(pool.clone(), backend, writer_file)?;
        Ok(Self {
            pool,
            backend,
            sqlite_file_url,
            writer,
            sessions: sessions::SessionCache::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Opens one connection, applies the settings and reads the schema: what a damaged or
/// foreign file fails at.
async fn probe_sqlite(url: &str) -> Result<(), StoreError> {
    let mut conn = AnyConnection::connect(url).await?;
    sqlx::raw_sql(SQLITE_PRAGMAS).execute(&mut conn).await?;
    sqlx::query("SELECT COUNT(*) FROM sqlite_master")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Copies every committed page from the write-ahead log into the main file and empties the
/// log, on a connection of its own (the pool is closed by then). SQLite also does this when
/// its last connection closes, but not while another process (the CLI) has the file open.
/// Returns whether the log could be emptied (not while another connection is writing).
async fn checkpoint_sqlite(url: &str) -> Result<bool, StoreError> {
    let mut conn = AnyConnection::connect(url).await?;
    sqlx::raw_sql("PRAGMA busy_timeout=5000")
        .execute(&mut conn)
        .await?;
    let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await?;
    let busy: i64 = row.try_get(0)?;
    conn.close().await?;
    Ok(busy == 0)
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

/// `LIMIT` for a page size where 0 means "all": both backends accept the largest BIGINT,
/// while SQLite's `-1` and PostgreSQL's `ALL` are each rejected by the other.
fn page_limit(count: u32) -> i64 {
    if count == 0 {
        i64::MAX
    } else {
        i64::from(count)
    }
}

/// `$first, $first+1, ...`: `n` numbered placeholders for an `IN (...)` list.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `WHERE` clause of equality tests on text columns, numbered from `$1`.
#[derive(Default)]
struct Filter<'a> {
    clauses: Vec<String>,
    values: Vec<&'a str>,
}

impl<'a> Filter<'a> {
    fn eq(mut self, column: &str, value: &'a str) -> Self {
        self.values.push(value);
        self.clauses
            .push(format!("{column} = ${}", self.values.len()));
        self
    }

    /// Tests `column` only when a value is given.
    fn eq_opt(self, column: &str, value: Option<&'a str>) -> Self {
        match value {
            Some(value) => self.eq(column, value),
            None => self,
        }
    }

    fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    /// A query of `sql` (which must end with this filter's clause) with the values bound.
    fn query(&self, sql: String) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments> {
        self.values
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)), |q, v| q.bind(*v))
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn create_app(&self, app: App, reserved_ids: &[i64]) -> Result<App, StoreError> {
        apps::create(&self.pool, self.backend, app, reserved_ids).await
    }

    async fn update_app(&self, app: &App) -> Result<(), StoreError> {
        apps::update(&self.pool, app).await
    }

    async fn list_apps(&self) -> Result<Vec<App>, StoreError> {
        apps::list(&self.pool).await
    }

    async fn app_by_id(&self, id: &str) -> Result<Option<App>, StoreError> {
        apps::by_id(&self.pool, id).await
    }

    async fn app_by_key(&self, key: &str) -> Result<Option<App>, StoreError> {
        apps::by_key(&self.pool, key).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        // The publishes already queued are saved and answered first; later ones fail. Then
        // closing waits for every connection to come back: the writes in flight finish.
        let drained = async {
            self.writer.close().await;
            self.pool.close().await;
        };
        if tokio::time::timeout(CLOSE_WAIT, drained).await.is_err() {
            tracing::warn!(
                "closing the database: writes still in flight after {CLOSE_WAIT:?}, leaving them"
            );
        }
        if let Some(url) = &self.sqlite_file_url {
            match checkpoint_sqlite(url).await {
                Ok(true) => {}
                Ok(false) => tracing::warn!(
                    "closing the database: another connection is writing, the write-ahead log \
                     is not empty"
                ),
                Err(e) => tracing::warn!(error = %e, "closing the database: checkpoint failed"),
            }
        }
    }

    async fn save_events(
        &self,
        app_id: &str,
        new: &[NewEvent],
    ) -> Result<Vec<EventRecord>, StoreError> {
        self.writer.save(app_id, new).await
    }

    async fn channel_history(
        &self,
        app_id: &str,
        channel: &str,
        skip: u32,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        events::channel_history(&self.pool, app_id, channel, skip, count).await
    }

    async fn personal_history(
        &self,
        app_id: &str,
        user_id: &str,
        skip: u32,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        events::personal_history(&self.pool, app_id, user_id, skip, count).await
    }

    async fn recent_events(
        &self,
        app_id: &str,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError> {
        events::recent(&self.pool, app_id, count).await
    }

    async fn create_session(&self, app_id: &str) -> Result<String, StoreError> {
        sessions::create(&self.pool, &self.sessions, app_id).await
    }

    async fn session_app_at(&self, token: &str, now: i64) -> Result<Option<String>, StoreError> {
        sessions::app_at(&self.pool, &self.sessions, token, now).await
    }

    async fn delete_session(&self, token: &str) -> Result<bool, StoreError> {
        sessions::delete(&self.pool, &self.sessions, token).await
    }

    async fn purge_expired_sessions(&self, now: i64, limit: u32) -> Result<u64, StoreError> {
        sessions::purge_expired(&self.pool, &self.sessions, now, limit).await
    }

    async fn create_subscription(
        &self,
        app_id: &str,
        user_id: &str,
        event: &str,
    ) -> Result<(SubscriptionRecord, bool), StoreError> {
        subscriptions::create(&self.pool, app_id, user_id, event).await
    }

    async fn list_subscriptions(
        &self,
        app_id: &str,
        user_id: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError> {
        subscriptions::list(&self.pool, app_id, user_id, event).await
    }

    async fn delete_subscription(
        &self,
        app_id: &str,
        user_id: &str,
        event: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError> {
        subscriptions::delete(&self.pool, app_id, user_id, event).await
    }

    async fn subscribed_channels(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        subscriptions::channels_of(&self.pool, app_id, user_id).await
    }

    async fn subscribers_of(&self, app_id: &str, channel: &str) -> Result<Vec<String>, StoreError> {
        subscriptions::users_of(&self.pool, app_id, channel).await
    }

    async fn create_target(
        &self,
        app_id: &str,
        target: NewTarget,
    ) -> Result<(TargetRecord, bool), StoreError> {
        targets::create(&self.pool, app_id, target).await
    }

    async fn list_targets(
        &self,
        app_id: &str,
        kind: TargetKind,
        target: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        targets::list(&self.pool, app_id, kind, target, event).await
    }

    async fn delete_targets(
        &self,
        app_id: &str,
        kind: TargetKind,
        target: &str,
        event: Option<&str>,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        targets::delete(&self.pool, app_id, kind, target, event).await
    }

    async fn targets_for_channels(
        &self,
        app_id: &str,
        channels: &[String],
    ) -> Result<Vec<TargetRecord>, StoreError> {
        targets::for_channels(&self.pool, app_id, channels).await
    }

    async fn all_targets(&self, app_id: &str) -> Result<Vec<TargetRecord>, StoreError> {
        targets::all(&self.pool, app_id).await
    }

    async fn target_counts(&self) -> Result<Vec<TargetCount>, StoreError> {
        targets::counts(&self.pool).await
    }

    async fn enqueue_deliveries(
        &self,
        app_id: &str,
        new: &[NewDelivery],
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        deliveries::enqueue(&self.pool, app_id, new).await
    }

    async fn claim_deliveries(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        deliveries::claim(&self.pool, self.backend, node, now_ms, lease_ms, limit).await
    }

    async fn finish_delivery(&self, id: i64, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        deliveries::finish(&self.pool, id, outcome).await
    }

    async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        deliveries::pending_total(&self.pool).await
    }

    async fn delivery_counts(&self, app_id: &str) -> Result<DeliveryCounts, StoreError> {
        deliveries::counts(&self.pool, app_id).await
    }

    async fn get_deliveries(
        &self,
        app_id: &str,
        ids: &[i64],
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        deliveries::by_ids(&self.pool, app_id, ids).await
    }

    async fn list_deliveries(
        &self,
        app_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        deliveries::list(&self.pool, app_id, status, limit).await
    }

    async fn delete_events(
        &self,
        app_id: &str,
        which: ExpiredEvents<'_>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        events::delete(&self.pool, app_id, which, limit).await
    }

    async fn newest_event_id(&self, app_id: &str) -> Result<Option<i64>, StoreError> {
        events::newest_id(&self.pool, app_id).await
    }

    async fn crowded_channels(
        &self,
        app_id: &str,
        after_id: i64,
        keep: u64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        events::crowded_channels(&self.pool, app_id, after_id, keep).await
    }

    async fn delete_finished_deliveries(
        &self,
        app_id: &str,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        deliveries::delete_finished(&self.pool, app_id, before_ms, limit).await
    }

    async fn retry_delivery(
        &self,
        app_id: &str,
        id: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        deliveries::retry_now(&self.pool, app_id, id).await
    }

    async fn give_up_delivery(
        &self,
        app_id: &str,
        id: i64,
        reason: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        deliveries::give_up(&self.pool, app_id, id, reason).await
    }
}
