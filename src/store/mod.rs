//! Durable state: apps, persisted events and their associations, REST sessions, personal
//! subscriptions and offline-delivery targets.
//!
//! The [`Store`] trait is the seam between the hub and a database. One SQL implementation
//! ([`sql::SqlStore`]) serves both backends through sqlx's `Any` driver: SQLite (the embedded
//! default, a file in WAL mode) and PostgreSQL (for several nodes). Only the schema differs
//! per backend, so each has its own migration files and the queries are shared.
//!
//! Everything but apps and sessions is scoped by the owning app's id: each method takes an
//! `app_id` and never reads or writes another app's rows, so tenant isolation does not depend
//! on callers remembering a filter. The one exception is the delivery worker's side of the
//! outbox (claiming, finishing, the pending total): the worker serves every app, and no
//! request ever reaches those methods. Housekeeping ([`housekeeping`]) deletes what the
//! apps' retention settings let go, one app and one small batch at a time.

pub mod housekeeping;
pub mod migrations;
pub mod records;
pub mod sql;

use async_trait::async_trait;

use crate::app::App;
use crate::clock::now_unix;

pub use housekeeping::{Housekeeper, HousekeepingConfig, Retention, Swept};
pub use records::{
    DeliveryCounts, DeliveryKind, DeliveryOutcome, DeliveryRecord, DeliveryStatus, EventRecord,
    ExpiredEvents, NewDelivery, NewEvent, NewTarget, SESSION_TTL_SECS, SubscriptionRecord,
    TargetCount, TargetKind, TargetRecord,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// An error of the SQLite connection that saves persisted events (see
    /// [`sql::writer`]).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL {0:?}: use sqlite://FILE or postgres://...")]
    UnsupportedUrl(String),
    /// The database cannot be opened or read at all (a damaged or foreign file, a missing
    /// directory, no permission): the start stops with the file and the cause named.
    #[error("cannot use the database {file}: {reason}")]
    Unusable { file: String, reason: String },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Saves a new app and returns it with its numeric id assigned. The id is never one of
    /// `reserved_ids` (the numeric ids of apps declared in configuration): ids are handed out
    /// above the largest of them, and a clash (another process moving the counter back) is
    /// refused as a [`StoreError::Conflict`] with nothing saved.
    async fn create_app(&self, app: App, reserved_ids: &[i64]) -> Result<App, StoreError>;
    async fn update_app(&self, app: &App) -> Result<(), StoreError>;
    async fn list_apps(&self) -> Result<Vec<App>, StoreError>;
    async fn app_by_id(&self, id: &str) -> Result<Option<App>, StoreError>;
    async fn app_by_key(&self, key: &str) -> Result<Option<App>, StoreError>;
    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Waits (bounded) for the writes in flight, then closes every connection. On SQLite the
    /// write-ahead log is checkpointed into the main file first, so the file alone is a
    /// complete copy. Nothing may use the store afterwards.
    async fn close(&self);

    // Events (history) ------------------------------------------------------------------

    /// Saves the events of one publish (one per channel) in one transaction and associates
    /// them with the users subscribed to their channels. A user subscribed to several of the
    /// channels is associated only with the first matching event, in slice order. Returns
    /// the saved events, in the same order, with their ids. A `mid` already saved for the
    /// app is a [`StoreError::Conflict`].
    async fn save_events(
        &self,
        app_id: &str,
        events: &[NewEvent],
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The events of a channel, newest first; `count == 0` means no limit.
    async fn channel_history(
        &self,
        app_id: &str,
        channel: &str,
        skip: u32,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The events associated with a user, most recently associated first; `count == 0`
    /// means no limit.
    async fn personal_history(
        &self,
        app_id: &str,
        user_id: &str,
        skip: u32,
        count: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The app's events on every channel, newest first; `count == 0` means no limit.
    async fn recent_events(&self, app_id: &str, count: u32)
    -> Result<Vec<EventRecord>, StoreError>;

    // Sessions (REST login tokens) -------------------------------------------------------

    /// Opens a session for the app and returns its token: 64 lowercase hex characters.
    async fn create_session(&self, app_id: &str) -> Result<String, StoreError>;
    /// The app a token is logged into, or `None` if the token is unknown or expired.
    async fn session_app(&self, token: &str) -> Result<Option<String>, StoreError> {
        self.session_app_at(token, now_unix()).await
    }
    /// [`Store::session_app`] as of `now` (unix seconds): sessions expire
    /// [`SESSION_TTL_SECS`] after their creation.
    async fn session_app_at(&self, token: &str, now: i64) -> Result<Option<String>, StoreError>;
    /// Ends a session; returns whether it existed.
    async fn delete_session(&self, token: &str) -> Result<bool, StoreError>;
    /// Deletes up to `limit` of the sessions expired as of `now`, of every app; returns how
    /// many.
    async fn purge_expired_sessions(&self, now: i64, limit: u32) -> Result<u64, StoreError>;

    // Subscriptions (personal-channel aliases) -------------------------------------------

    /// Records that `user_id` is interested in channel `event`. Returns the record and
    /// whether it was created (`false`: it already existed and is returned unchanged).
    async fn create_subscription(
        &self,
        app_id: &str,
        user_id: &str,
        event: &str,
    ) -> Result<(SubscriptionRecord, bool), StoreError>;
    /// The app's subscriptions, optionally only a user's and/or a channel's, by id.
    async fn list_subscriptions(
        &self,
        app_id: &str,
        user_id: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<SubscriptionRecord>, StoreError>;
    /// Deletes a subscription and returns it, or `None` if there was none.
    async fn delete_subscription(
        &self,
        app_id: &str,
        user_id: &str,
        event: &str,
    ) -> Result<Option<SubscriptionRecord>, StoreError>;
    /// The channels a user is subscribed to, in subscription order: what `personal-{user}`
    /// expands to.
    async fn subscribed_channels(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// The users subscribed to a channel, in subscription order.
    async fn subscribers_of(&self, app_id: &str, channel: &str) -> Result<Vec<String>, StoreError>;

    // Delivery targets (offline delivery) ------------------------------------------------

    /// Saves a delivery target. Returns the record and whether it was created (`false`: the
    /// same kind, target and event already existed and is returned unchanged).
    async fn create_target(
        &self,
        app_id: &str,
        target: NewTarget,
    ) -> Result<(TargetRecord, bool), StoreError>;
    /// The app's targets of a kind, optionally only one target's and/or a channel's, by id.
    async fn list_targets(
        &self,
        app_id: &str,
        kind: TargetKind,
        target: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<TargetRecord>, StoreError>;
    /// Deletes a target's records (on every channel, or only on `event`) and returns them.
    async fn delete_targets(
        &self,
        app_id: &str,
        kind: TargetKind,
        target: &str,
        event: Option<&str>,
    ) -> Result<Vec<TargetRecord>, StoreError>;
    /// The app's targets of every kind on any of the channels, by id.
    async fn targets_for_channels(
        &self,
        app_id: &str,
        channels: &[String],
    ) -> Result<Vec<TargetRecord>, StoreError>;
    /// Every target of the app, all kinds, by id.
    async fn all_targets(&self, app_id: &str) -> Result<Vec<TargetRecord>, StoreError>;
    /// Per kind, how many targets exist and in how many apps, across every app: the
    /// operator's health details. Kinds without targets are left out.
    async fn target_counts(&self) -> Result<Vec<TargetCount>, StoreError>;

    // Outbox (durable offline deliveries) ------------------------------------------------

    /// Records deliveries as pending, due now, in one transaction.
    async fn enqueue_deliveries(
        &self,
        app_id: &str,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Claims up to `limit` due pending deliveries of any app for `node` until
    /// `now_ms + lease_ms` (worker side: not scoped by app).
    /// A claimed delivery is invisible to other claims until its lease ends, so two nodes
    /// never attempt it at once; a node that dies loses its claims when the lease ends.
    async fn claim_deliveries(
        &self,
        node: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Records the outcome of an attempt and releases the claim (worker side: by the id of
    /// a delivery it claimed).
    async fn finish_delivery(&self, id: i64, outcome: &DeliveryOutcome) -> Result<(), StoreError>;
    /// How many pending deliveries there are across every app: the worker's backlog gauge
    /// (worker side: not scoped by app, never shown to an app).
    async fn pending_deliveries(&self) -> Result<i64, StoreError>;
    /// An app's deliveries counted by status.
    async fn delivery_counts(&self, app_id: &str) -> Result<DeliveryCounts, StoreError>;
    /// An app's deliveries by id (ids of other apps are ignored).
    async fn get_deliveries(
        &self,
        app_id: &str,
        ids: &[i64],
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// An app's deliveries, newest first, optionally of one status.
    async fn list_deliveries(
        &self,
        app_id: &str,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    // Housekeeping (retention): each call is one short transaction --------------------------

    /// Deletes up to `limit` of the app's events that `which` selects, oldest first, with
    /// their user associations, in one transaction; returns how many events went.
    async fn delete_events(
        &self,
        app_id: &str,
        which: ExpiredEvents<'_>,
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// The id of the app's newest stored event.
    async fn newest_event_id(&self, app_id: &str) -> Result<Option<i64>, StoreError>;
    /// The app's channels that hold an event newer than `after_id` and more than `keep`
    /// events, each with the id of its newest event beyond the `keep` newest: that event and
    /// every older one on the channel are over the limit.
    async fn crowded_channels(
        &self,
        app_id: &str,
        after_id: i64,
        keep: u64,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Deletes up to `limit` of the app's finished deliveries (delivered or failed) last
    /// updated before `before_ms`; returns how many. Pending deliveries are never touched.
    async fn delete_finished_deliveries(
        &self,
        app_id: &str,
        before_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError>;
    /// An operator's "retry now": makes an app's pending or failed delivery pending and due
    /// now. `None` if the app has no such delivery or it was already delivered.
    async fn retry_delivery(
        &self,
        app_id: &str,
        id: i64,
    ) -> Result<Option<DeliveryRecord>, StoreError>;
    /// An operator's "give up": marks an app's pending delivery failed with `reason`. `None`
    /// if the app has no such delivery or it is no longer pending.
    async fn give_up_delivery(
        &self,
        app_id: &str,
        id: i64,
        reason: &str,
    ) -> Result<Option<DeliveryRecord>, StoreError>;
}

/// Opens the store a database URL names and brings its schema up to date.
pub async fn open(url: &str) -> Result<sql::SqlStore, StoreError> {
    sql::SqlStore::connect(url).await
}
