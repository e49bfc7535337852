//! The store's contract, run unchanged against both backends.
//!
//! Each case is written once, as an async fn over a `&dyn Store` (or over a [`TestDb`] when it
//! needs to open the database more than once), and `store_tests!` runs it twice: on a fresh
//! SQLite file and on PostgreSQL in a schema of its own (so cases, and parallel test runs,
//! never see each other's rows). PostgreSQL is at `PUSHI_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`; if it cannot be reached the PostgreSQL cases fail,
//! unless `PUSHI_TEST_SKIP_POSTGRES=1` says to skip them.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use futures_util::FutureExt;
use futures_util::future::join_all;
use std::sync::Arc;
use std::time::Duration;

use pushi::app::{App, NewApp};
use pushi::clock::now_unix;
use pushi::store::sql::SqlStore;
use pushi::store::{
    DeliveryKind, DeliveryOutcome, DeliveryStatus, EventRecord, ExpiredEvents, Housekeeper,
    HousekeepingConfig, NewDelivery, NewEvent, NewTarget, SESSION_TTL_SECS, Store, StoreError,
    Swept, TargetKind,
};
use sqlx::Connection;

// Harness ------------------------------------------------------------------------------------

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A unique suffix for database names: process id, time and a counter.
fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An empty database for one case, removed when the case ends.
enum TestDb {
    Sqlite { file: PathBuf },
    Postgres { base_url: String, schema: String },
}

impl TestDb {
    fn sqlite(case: &str) -> Self {
        let file = std::env::temp_dir().join(format!("pushi_store_{case}_{}.db", unique_suffix()));
        Self::Sqlite { file }
    }

    /// `None` when PostgreSQL is unreachable and skipping was asked for.
    async fn postgres(case: &str) -> Option<Self> {
        let base_url = std::env::var("PUSHI_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_owned());
        let mut admin = match sqlx::PgConnection::connect(&base_url).await {
            Ok(conn) => conn,
            Err(e) if std::env::var("PUSHI_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => {
                eprintln!("skipping PostgreSQL case {case}: {e}");
                return None;
            }
            Err(e) => panic!(
                "PostgreSQL at {base_url} is unreachable ({e}); start it, point \
                 PUSHI_TEST_POSTGRES_URL at one, or set PUSHI_TEST_SKIP_POSTGRES=1"
            ),
        };
        // PostgreSQL truncates names to 63 bytes: the unique part goes first.
        let mut schema = format!("pushi_test_{}_{case}", unique_suffix());
        schema.truncate(63);
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
            .execute(&mut admin)
            .await
            .expect("create test schema");
        Some(Self::Postgres { base_url, schema })
    }

    fn url(&self) -> String {
        match self {
            Self::Sqlite { file } => format!("sqlite://{}", file.display()),
            Self::Postgres { base_url, schema } => {
                let sep = if base_url.contains('?') { '&' } else { '?' };
                format!("{base_url}{sep}options=-c%20search_path%3D{schema}")
            }
        }
    }

    async fn open(&self) -> SqlStore {
        let store = SqlStore::connect(&self.url()).await.expect("open store");
        if let Self::Postgres { schema, .. } = self {
            // The URL's search_path must hold, or cases would share the public schema.
            let current: String = sqlx::query_scalar("SELECT current_schema()::text")
                .fetch_one(store.pool())
                .await
                .expect("current_schema");
            assert_eq!(&current, schema);
        }
        store
    }

    async fn remove(&self) {
        match self {
            Self::Sqlite { file } => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut path = file.clone().into_os_string();
                    path.push(suffix);
                    let _ = std::fs::remove_file(path);
                }
            }
            Self::Postgres { base_url, schema } => {
                let mut admin = sqlx::PgConnection::connect(base_url)
                    .await
                    .expect("reconnect to drop the test schema");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA \"{schema}\" CASCADE"
                )))
                .execute(&mut admin)
                .await
                .expect("drop test schema");
            }
        }
    }

    /// Runs a case, then removes the database whether or not the case panicked.
    async fn run(self, case: impl AsyncFnOnce(&Self)) {
        let outcome = AssertUnwindSafe(case(&self)).catch_unwind().await;
        self.remove().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs a case over a freshly opened store.
async fn with_store(db: &TestDb, case: impl AsyncFnOnce(&dyn Store)) {
    let store = db.open().await;
    case(&store).await;
    store.close().await;
}

/// `store: [...]` cases take a `&dyn Store`; `db: [...]` cases take the [`TestDb`].
macro_rules! store_tests {
    (store: [$($store_case:ident),* $(,)?], db: [$($db_case:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $store_case() {
                    let db = super::TestDb::sqlite(stringify!($store_case));
                    db.run(async |db| super::with_store(db, super::$store_case).await).await;
                }
            )*
            $(
                #[tokio::test]
                async fn $db_case() {
                    let db = super::TestDb::sqlite(stringify!($db_case));
                    db.run(super::$db_case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $store_case() {
                    if let Some(db) = super::TestDb::postgres(stringify!($store_case)).await {
                        db.run(async |db| super::with_store(db, super::$store_case).await).await;
                    }
                }
            )*
            $(
                #[tokio::test]
                async fn $db_case() {
                    if let Some(db) = super::TestDb::postgres(stringify!($db_case)).await {
                        db.run(super::$db_case).await;
                    }
                }
            )*
        }
    };
}

store_tests! {
    store: [
        apps_still_work,
        saved_events_come_back_with_ids,
        associations_go_to_the_first_matching_event_of_a_publish,
        concurrent_publishes_keep_their_own_dedup,
        a_repeated_mid_is_a_conflict_and_saves_nothing,
        a_failing_publish_fails_alone_among_concurrent_ones,
        history_is_newest_first_and_paged,
        personal_history_is_paged_by_association,
        apps_never_see_each_others_rows,
        creating_a_subscription_twice_returns_the_first,
        concurrent_subscription_creates_make_one_row,
        sessions_resolve_until_they_expire,
        targets_are_unique_and_deletable,
        outbox_claims_once_and_records_outcomes,
        outbox_leases_expire_and_concurrent_claims_split,
        app_ids_are_handed_out_above_reserved_ones,
        channels_beyond_their_limit_keep_the_newest,
        finished_deliveries_expire_and_pending_ones_stay,
        expired_sessions_are_purged_in_batches,
        operators_retry_and_give_up_one_apps_deliveries,
        the_longest_names_fit_every_index,
    ],
    db: [
        migrations_run_once,
        concurrent_first_starts_both_succeed,
        data_survives_reopening,
        expired_events_go_with_their_associations,
        a_sweep_applies_each_apps_retention,
    ],
}

// Helpers -----------------------------------------------------------------------------------

fn delivery(target: &str) -> NewDelivery {
    NewDelivery {
        kind: DeliveryKind::Web,
        target: target.into(),
        payload: format!(r#"{{"url":"{target}"}}"#),
    }
}

fn millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn event(channel: &str, name: &str) -> NewEvent {
    NewEvent::new(
        channel,
        name,
        None,
        format!(r#"{{"channel":"{channel}","event":"{name}","data":"x"}}"#),
    )
}

async fn publish(store: &dyn Store, app_id: &str, channels: &[&str]) -> Vec<EventRecord> {
    let events: Vec<NewEvent> = channels.iter().map(|c| event(c, "e")).collect();
    store.save_events(app_id, &events).await.expect("save")
}

async fn subscribe(store: &dyn Store, app_id: &str, user: &str, channels: &[&str]) {
    for channel in channels {
        store
            .create_subscription(app_id, user, channel)
            .await
            .expect("subscribe");
    }
}

fn ids(events: &[EventRecord]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

fn web(target: &str, event: &str) -> NewTarget {
    NewTarget {
        kind: TargetKind::Web,
        target: target.into(),
        event: event.into(),
        p256dh: None,
        auth: None,
    }
}

// Cases -------------------------------------------------------------------------------------

async fn migrations_run_once(db: &TestDb) {
    let first = db.open().await;
    let app = first
        .create_app(
            NewApp {
                name: "kept".into(),
                ..Default::default()
            }
            .into_app(),
            &[],
        )
        .await
        .unwrap();
    // A second start against a migrated database, while the first is still open.
    let second = db.open().await;
    let versions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pushi_migrations")
        .fetch_one(second.pool())
        .await
        .unwrap();
    let files = std::fs::read_dir("migrations/sqlite").unwrap().count() as i64;
    assert_eq!(versions, files, "every migration applied exactly once");
    assert_eq!(second.app_by_id(&app.id).await.unwrap(), Some(app));
    first.close().await;
    second.close().await;
    // And a third, after both closed.
    let third = db.open().await;
    assert_eq!(third.list_apps().await.unwrap().len(), 1);
    third.close().await;
}

async fn concurrent_first_starts_both_succeed(db: &TestDb) {
    // Two nodes (or the server and the CLI) starting at once on an empty database.
    let url = db.url();
    let stores = join_all((0..4).map(|_| SqlStore::connect(&url))).await;
    for store in stores {
        let store = store.expect("concurrent start");
        assert!(store.list_apps().await.unwrap().is_empty());
        store.close().await;
    }
}

async fn apps_still_work(store: &dyn Store) {
    let created = store
        .create_app(
            NewApp {
                name: "one".into(),
                ..Default::default()
            }
            .into_app(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(created.id, "1");
    let other = store
        .create_app(
            NewApp {
                name: "two".into(),
                ..Default::default()
            }
            .into_app(),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(store.app_by_id("1").await.unwrap().as_ref(), Some(&created));
    assert_eq!(
        store.app_by_key(&other.key).await.unwrap(),
        Some(other.clone())
    );
    assert_eq!(store.app_by_id("not-a-number").await.unwrap(), None);
    assert_eq!(store.app_by_key("nope").await.unwrap(), None);

    let mut changed = created.clone();
    changed.enabled = false;
    changed.description = Some("described".into());
    changed.settings.client_events = false;
    changed.settings.max_connections = Some(7);
    store.update_app(&changed).await.unwrap();
    assert_eq!(store.app_by_id("1").await.unwrap(), Some(changed.clone()));
    assert_eq!(store.list_apps().await.unwrap(), vec![changed, other]);

    let clash = store
        .create_app(
            NewApp {
                name: "one".into(),
                ..Default::default()
            }
            .into_app(),
            &[],
        )
        .await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    store.ping().await.unwrap();
}

async fn saved_events_come_back_with_ids(store: &dyn Store) {
    assert!(store.save_events("1", &[]).await.unwrap().is_empty());
    let mut from_socket = event("news", "client-typed");
    from_socket.owner_id = Some("123.456".into());
    from_socket.timestamp = 1_700_000_000.123_456;
    let input = vec![from_socket, event("sports", "goal")];
    let before = now_unix();
    let saved = store.save_events("1", &input).await.unwrap();
    assert_eq!(saved.len(), 2);
    assert!(saved[0].id < saved[1].id);
    for (record, new) in saved.iter().zip(&input) {
        assert_eq!(record.app_id, "1");
        assert_eq!(record.mid, new.mid);
        assert_eq!(record.channel, new.channel);
        assert_eq!(record.event, new.event);
        assert_eq!(record.owner_id, new.owner_id);
        assert_eq!(record.timestamp, new.timestamp);
        assert_eq!(record.data, new.data);
        assert!(record.created >= before && record.created <= now_unix());
    }
    // What the store returns on save is exactly what it reads back.
    assert_eq!(
        store.channel_history("1", "news", 0, 0).await.unwrap(),
        vec![saved[0].clone()]
    );
    assert_eq!(
        store.recent_events("1", 0).await.unwrap(),
        vec![saved[1].clone(), saved[0].clone()]
    );
}

async fn associations_go_to_the_first_matching_event_of_a_publish(store: &dyn Store) {
    subscribe(store, "1", "alice", &["news", "sports"]).await;
    subscribe(store, "1", "bob", &["sports"]).await;
    subscribe(store, "1", "carol", &["weather"]).await;
    subscribe(store, "2", "alice", &["news"]).await;

    let first = publish(store, "1", &["news", "sports"]).await;
    assert_eq!(
        store.personal_history("1", "alice", 0, 0).await.unwrap(),
        vec![first[0].clone()]
    );
    assert_eq!(
        store.personal_history("1", "bob", 0, 0).await.unwrap(),
        vec![first[1].clone()]
    );
    assert!(
        store
            .personal_history("1", "carol", 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // The same user id in another app got nothing from app 1's publish.
    assert!(
        store
            .personal_history("2", "alice", 0, 0)
            .await
            .unwrap()
            .is_empty()
    );

    // Slice order decides which event is "first".
    let second = publish(store, "1", &["sports", "news"]).await;
    assert_eq!(
        ids(&store.personal_history("1", "alice", 0, 0).await.unwrap()),
        vec![second[0].id, first[0].id]
    );
    // A channel nobody follows, and a repeated channel in one publish.
    let third = publish(store, "1", &["nobody", "sports", "sports"]).await;
    assert_eq!(
        ids(&store.personal_history("1", "bob", 0, 0).await.unwrap()),
        vec![third[1].id, second[0].id, first[1].id]
    );
    // Unsubscribing stops later associations but keeps the history.
    store
        .delete_subscription("1", "alice", "sports")
        .await
        .unwrap();
    publish(store, "1", &["sports"]).await;
    assert_eq!(
        store
            .personal_history("1", "alice", 0, 0)
            .await
            .unwrap()
            .len(),
        3
    );
}

async fn concurrent_publishes_keep_their_own_dedup(store: &dyn Store) {
    subscribe(store, "1", "alice", &["news", "sports"]).await;
    let publishes = join_all((0..10).map(|_| publish(store, "1", &["news", "sports"]))).await;
    let history = store.personal_history("1", "alice", 0, 0).await.unwrap();
    assert_eq!(history.len(), 10);
    let firsts: HashSet<i64> = publishes.iter().map(|p| p[0].id).collect();
    assert!(
        history
            .iter()
            .all(|e| e.channel == "news" && firsts.contains(&e.id))
    );
}

async fn a_repeated_mid_is_a_conflict_and_saves_nothing(store: &dyn Store) {
    let saved = publish(store, "1", &["news"]).await;
    let mut repeat = event("other", "e");
    repeat.mid = saved[0].mid.clone();
    let result = store
        .save_events("1", &[event("fresh", "e"), repeat.clone()])
        .await;
    assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
    // The whole publish was rolled back.
    assert!(
        store
            .channel_history("1", "fresh", 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
    // A mid is unique within an app only.
    store.save_events("2", &[repeat]).await.unwrap();
}

/// Concurrent publishes are saved together (group commit); one that cannot be saved must
/// fail on its own, every other one of its batch saved and answered.
async fn a_failing_publish_fails_alone_among_concurrent_ones(store: &dyn Store) {
    let saved = publish(store, "1", &["news"]).await;
    let mut repeat = event("batch", "bad");
    repeat.mid = saved[0].mid.clone();
    let publishes = (0..20).map(|i| {
        let events = if i == 7 {
            vec![repeat.clone()]
        } else {
            vec![event("batch", &format!("good-{i}"))]
        };
        async move { store.save_events("1", &events).await }
    });
    let results = join_all(publishes).await;
    for (i, result) in results.iter().enumerate() {
        if i == 7 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}");
        } else {
            assert!(
                matches!(result, Ok(records) if records.len() == 1),
                "{i}: {result:?}"
            );
        }
    }
    let history = store.channel_history("1", "batch", 0, 0).await.unwrap();
    assert_eq!(history.len(), 19);
    assert!(history.iter().all(|e| e.event.starts_with("good-")));
}

async fn history_is_newest_first_and_paged(store: &dyn Store) {
    let mut on_channel = Vec::new();
    let mut all = Vec::new();
    for _ in 0..5 {
        let saved = publish(store, "1", &["ch", "other"]).await;
        on_channel.push(saved[0].id);
        all.extend(ids(&saved));
    }
    on_channel.reverse();
    all.reverse();
    let page = |skip, count| store.channel_history("1", "ch", skip, count);
    assert_eq!(ids(&page(0, 0).await.unwrap()), on_channel);
    assert_eq!(ids(&page(0, 2).await.unwrap()), on_channel[0..2]);
    assert_eq!(ids(&page(2, 2).await.unwrap()), on_channel[2..4]);
    assert_eq!(ids(&page(4, 2).await.unwrap()), on_channel[4..]);
    assert!(page(5, 2).await.unwrap().is_empty());
    assert_eq!(ids(&page(3, 0).await.unwrap()), on_channel[3..]);
    assert!(
        store
            .channel_history("1", "none", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert_eq!(ids(&store.recent_events("1", 3).await.unwrap()), all[0..3]);
    assert_eq!(ids(&store.recent_events("1", 0).await.unwrap()), all);
}

async fn personal_history_is_paged_by_association(store: &dyn Store) {
    subscribe(store, "1", "u", &["a", "b"]).await;
    let mut expected = Vec::new();
    for channels in [&["a"][..], &["b", "a"], &["x"], &["a", "b"], &["b"]] {
        let saved = publish(store, "1", channels).await;
        if let Some(first) = saved.iter().find(|e| e.channel != "x") {
            expected.push(first.id);
        }
    }
    expected.reverse();
    let page = |skip, count| store.personal_history("1", "u", skip, count);
    assert_eq!(ids(&page(0, 0).await.unwrap()), expected);
    assert_eq!(ids(&page(1, 2).await.unwrap()), expected[1..3]);
    assert_eq!(ids(&page(3, 10).await.unwrap()), expected[3..]);
    assert!(page(4, 1).await.unwrap().is_empty());
    assert!(
        store
            .personal_history("1", "nobody", 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn apps_never_see_each_others_rows(store: &dyn Store) {
    // "cfg-app" stands for an app declared in configuration, whose id is not a number.
    for app in ["1", "2", "cfg-app"] {
        subscribe(store, app, "u", &["news", app]).await;
        publish(store, app, &["news"]).await;
        store
            .create_target(app, web("https://hook", "news"))
            .await
            .unwrap();
    }
    for app in ["1", "2", "cfg-app"] {
        let history = store.channel_history(app, "news", 0, 0).await.unwrap();
        assert_eq!(history.len(), 1);
        assert!(history.iter().all(|e| e.app_id == app));
        let recent = store.recent_events(app, 0).await.unwrap();
        assert!(recent.len() == 1 && recent[0].app_id == app);
        let personal = store.personal_history(app, "u", 0, 0).await.unwrap();
        assert!(personal.len() == 1 && personal[0].app_id == app);
        assert_eq!(
            store.subscribed_channels(app, "u").await.unwrap(),
            vec!["news", app]
        );
        assert_eq!(store.subscribers_of(app, "news").await.unwrap(), vec!["u"]);
        assert!(
            store
                .subscribers_of(app, if app == "1" { "2" } else { "1" })
                .await
                .unwrap()
                .is_empty()
        );
        let subs = store.list_subscriptions(app, None, None).await.unwrap();
        assert!(subs.len() == 2 && subs.iter().all(|s| s.app_id == app));
        let targets = store
            .list_targets(app, TargetKind::Web, None, None)
            .await
            .unwrap();
        assert!(targets.len() == 1 && targets[0].app_id == app);
        let targets = store
            .targets_for_channels(app, &["news".into()])
            .await
            .unwrap();
        assert!(targets.len() == 1 && targets[0].app_id == app);
    }
    // Deleting in one app leaves the others alone.
    assert!(
        store
            .delete_subscription("2", "u", "news")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .delete_subscription("2", "u", "1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .delete_targets("2", TargetKind::Web, "https://hook", None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.subscribers_of("1", "news").await.unwrap(), vec!["u"]);
    assert_eq!(
        store
            .list_targets("1", TargetKind::Web, None, None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .list_targets("2", TargetKind::Web, None, None)
            .await
            .unwrap()
            .is_empty()
    );

    // Each token resolves to the app it was made for.
    let one = store.create_session("1").await.unwrap();
    let two = store.create_session("2").await.unwrap();
    assert_eq!(store.session_app(&one).await.unwrap().as_deref(), Some("1"));
    assert_eq!(store.session_app(&two).await.unwrap().as_deref(), Some("2"));
}

async fn creating_a_subscription_twice_returns_the_first(store: &dyn Store) {
    let (first, created) = store.create_subscription("1", "u", "news").await.unwrap();
    assert!(created);
    assert_eq!(
        (
            first.app_id.as_str(),
            first.user_id.as_str(),
            first.event.as_str()
        ),
        ("1", "u", "news")
    );
    assert_eq!(first.created, first.modified);
    let (again, created) = store.create_subscription("1", "u", "news").await.unwrap();
    assert!(!created);
    assert_eq!(again, first);
    let (sports, _) = store.create_subscription("1", "u", "sports").await.unwrap();
    let (other, _) = store.create_subscription("1", "v", "news").await.unwrap();

    assert_eq!(
        store.list_subscriptions("1", None, None).await.unwrap(),
        vec![first.clone(), sports.clone(), other.clone()]
    );
    assert_eq!(
        store
            .list_subscriptions("1", Some("u"), None)
            .await
            .unwrap(),
        vec![first.clone(), sports.clone()]
    );
    assert_eq!(
        store
            .list_subscriptions("1", None, Some("news"))
            .await
            .unwrap(),
        vec![first.clone(), other.clone()]
    );
    assert_eq!(
        store
            .list_subscriptions("1", Some("u"), Some("sports"))
            .await
            .unwrap(),
        vec![sports.clone()]
    );
    assert_eq!(
        store.subscribed_channels("1", "u").await.unwrap(),
        vec!["news", "sports"]
    );
    assert_eq!(
        store.subscribers_of("1", "news").await.unwrap(),
        vec!["u", "v"]
    );

    assert_eq!(
        store.delete_subscription("1", "u", "news").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.delete_subscription("1", "u", "news").await.unwrap(),
        None
    );
    assert_eq!(
        store.subscribed_channels("1", "u").await.unwrap(),
        vec!["sports"]
    );
    let (recreated, created) = store.create_subscription("1", "u", "news").await.unwrap();
    assert!(created && recreated.id > other.id);
    assert_eq!(
        store.subscribed_channels("1", "u").await.unwrap(),
        vec!["sports", "news"]
    );
}

async fn concurrent_subscription_creates_make_one_row(store: &dyn Store) {
    let results = join_all((0..8).map(|_| store.create_subscription("1", "u", "news"))).await;
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    assert!(results.iter().all(|(s, _)| s == &results[0].0));
    assert_eq!(
        store
            .list_subscriptions("1", None, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn sessions_resolve_until_they_expire(store: &dyn Store) {
    let before = now_unix();
    let token = store.create_session("1").await.unwrap();
    let after = now_unix();
    assert_eq!(token.len(), 64);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_ne!(store.create_session("1").await.unwrap(), token);

    assert_eq!(
        store.session_app(&token).await.unwrap().as_deref(),
        Some("1")
    );
    let last_valid = before + SESSION_TTL_SECS - 1;
    assert_eq!(
        store
            .session_app_at(&token, last_valid)
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    let expired = after + SESSION_TTL_SECS;
    assert_eq!(store.session_app_at(&token, expired).await.unwrap(), None);
    assert_eq!(
        store.session_app("0".repeat(64).as_str()).await.unwrap(),
        None
    );

    assert_eq!(store.purge_expired_sessions(after, 100).await.unwrap(), 0);
    let kept = store.create_session("2").await.unwrap();
    assert!(store.delete_session(&kept).await.unwrap());
    assert!(!store.delete_session(&kept).await.unwrap());
    assert_eq!(store.session_app(&kept).await.unwrap(), None);
    assert_eq!(store.purge_expired_sessions(expired, 100).await.unwrap(), 2);
    assert_eq!(store.session_app(&token).await.unwrap(), None);
}

async fn targets_are_unique_and_deletable(store: &dyn Store) {
    let (hook, created) = store
        .create_target("1", web("https://a/hook", "news"))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (hook.kind, hook.target.as_str(), hook.event.as_str()),
        (TargetKind::Web, "https://a/hook", "news")
    );
    assert_eq!((hook.p256dh.as_deref(), hook.auth.as_deref()), (None, None));
    let (again, created) = store
        .create_target("1", web("https://a/hook", "news"))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(again, hook);
    let (hook_sports, _) = store
        .create_target("1", web("https://a/hook", "sports"))
        .await
        .unwrap();
    let push = NewTarget {
        kind: TargetKind::WebPush,
        target: "https://push/endpoint".into(),
        event: "news".into(),
        p256dh: Some("BPk".into()),
        auth: Some("secret".into()),
    };
    let (push, created) = store.create_target("1", push).await.unwrap();
    assert!(created);
    assert_eq!(
        (push.p256dh.as_deref(), push.auth.as_deref()),
        (Some("BPk"), Some("secret"))
    );
    // The same target text under another kind is another target.
    let mut mail = web("https://a/hook", "news");
    mail.kind = TargetKind::Smtp;
    let (mail, created) = store.create_target("1", mail).await.unwrap();
    assert!(created && mail.id != hook.id);
    let (apn, _) = store
        .create_target(
            "1",
            NewTarget {
                kind: TargetKind::Apn,
                ..web("tok", "weather")
            },
        )
        .await
        .unwrap();

    let list = |kind, target, event| store.list_targets("1", kind, target, event);
    assert_eq!(
        list(TargetKind::Web, None, None).await.unwrap(),
        vec![hook.clone(), hook_sports.clone()]
    );
    assert_eq!(
        list(TargetKind::Web, None, Some("sports")).await.unwrap(),
        vec![hook_sports.clone()]
    );
    assert_eq!(
        list(TargetKind::Web, Some("https://a/hook"), Some("news"))
            .await
            .unwrap(),
        vec![hook.clone()]
    );
    assert_eq!(
        list(TargetKind::WebPush, None, None).await.unwrap(),
        vec![push.clone()]
    );
    assert!(
        list(TargetKind::Web, Some("https://other"), None)
            .await
            .unwrap()
            .is_empty()
    );

    let channels: Vec<String> = ["news", "weather", "news", "unknown"]
        .map(String::from)
        .into();
    assert_eq!(
        store.targets_for_channels("1", &channels).await.unwrap(),
        vec![hook.clone(), push.clone(), mail.clone(), apn.clone()]
    );
    assert!(
        store
            .targets_for_channels("1", &[])
            .await
            .unwrap()
            .is_empty()
    );

    let deleted = store
        .delete_targets("1", TargetKind::Web, "https://a/hook", Some("sports"))
        .await
        .unwrap();
    assert_eq!(deleted, vec![hook_sports]);
    assert!(
        store
            .delete_targets("1", TargetKind::Web, "https://a/hook", Some("sports"))
            .await
            .unwrap()
            .is_empty()
    );
    let (hook_music, _) = store
        .create_target("1", web("https://a/hook", "music"))
        .await
        .unwrap();
    let deleted = store
        .delete_targets("1", TargetKind::Web, "https://a/hook", None)
        .await
        .unwrap();
    assert_eq!(deleted, vec![hook, hook_music]);
    // Other kinds with the same target text stay.
    assert_eq!(
        list(TargetKind::Smtp, None, None).await.unwrap(),
        vec![mail]
    );
}

async fn data_survives_reopening(db: &TestDb) {
    let store = db.open().await;
    let app = store
        .create_app(
            NewApp {
                name: "durable".into(),
                ..Default::default()
            }
            .into_app(),
            &[],
        )
        .await
        .unwrap();
    subscribe(&store, &app.id, "u", &["news"]).await;
    let saved = publish(&store, &app.id, &["news"]).await;
    let token = store.create_session(&app.id).await.unwrap();
    let (target, _) = store
        .create_target(&app.id, web("https://hook", "news"))
        .await
        .unwrap();
    store.close().await;
    drop(store);
    if let TestDb::Sqlite { file } = db {
        assert!(file.exists());
    }

    let store = db.open().await;
    assert_eq!(store.app_by_id(&app.id).await.unwrap(), Some(app.clone()));
    assert_eq!(
        store.channel_history(&app.id, "news", 0, 0).await.unwrap(),
        saved
    );
    assert_eq!(
        store.personal_history(&app.id, "u", 0, 0).await.unwrap(),
        saved
    );
    assert_eq!(
        store.subscribed_channels(&app.id, "u").await.unwrap(),
        vec!["news"]
    );
    assert_eq!(
        store.session_app(&token).await.unwrap(),
        Some(app.id.clone())
    );
    assert_eq!(
        store
            .list_targets(&app.id, TargetKind::Web, None, None)
            .await
            .unwrap(),
        vec![target]
    );
    // Ids keep growing after a restart.
    let later = publish(&store, &app.id, &["news"]).await;
    assert!(later[0].id > saved[0].id);
    store.close().await;
}

// Not backend-specific ------------------------------------------------------------------------

#[test]
fn event_data_serializes_as_the_json_it_holds() {
    let record = EventRecord {
        id: 1,
        app_id: "1".into(),
        mid: "m".into(),
        channel: "c".into(),
        event: "e".into(),
        owner_id: None,
        timestamp: 1.5,
        data: r#"{"channel":"c","data":"x"}"#.into(),
        created: 2,
    };
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(
        json["data"],
        serde_json::json!({"channel": "c", "data": "x"})
    );
    assert_eq!(json["owner_id"], serde_json::Value::Null);
    let broken = EventRecord {
        data: "not json".into(),
        ..record
    };
    assert_eq!(serde_json::to_value(&broken).unwrap()["data"], "not json");
}

#[test]
fn target_kinds_round_trip_through_their_names() {
    for kind in TargetKind::ALL {
        assert_eq!(TargetKind::parse(kind.as_str()), Some(kind));
        assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
    }
    assert_eq!(TargetKind::parse("fax"), None);
}

// Outbox -------------------------------------------------------------------------------------

async fn outbox_claims_once_and_records_outcomes(store: &dyn Store) {
    let queued = store
        .enqueue_deliveries(
            "1",
            &[
                delivery("http://a"),
                delivery("http://b"),
                delivery("http://c"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), 3);
    assert!(
        queued
            .iter()
            .all(|d| d.status == DeliveryStatus::Pending && d.attempts == 0)
    );
    let ids: HashSet<&str> = queued.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "delivery ids are unique");

    let now = millis();
    let claimed = store
        .claim_deliveries("node-a", now, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // Claimed rows are not handed out again while the lease runs.
    assert!(
        store
            .claim_deliveries("node-b", now, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    store
        .finish_delivery(claimed[0].id, &DeliveryOutcome::Delivered)
        .await
        .unwrap();
    store
        .finish_delivery(
            claimed[1].id,
            &DeliveryOutcome::Retry {
                next_attempt_ms: now + 3_600_000,
                error: "503".into(),
            },
        )
        .await
        .unwrap();
    store
        .finish_delivery(
            claimed[2].id,
            &DeliveryOutcome::Failed {
                error: "gave up".into(),
            },
        )
        .await
        .unwrap();
    let counts = store.delivery_counts("1").await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (1, 1, 1));
    // The retry is not due yet; once due it is claimable again, with its attempt counted.
    assert!(
        store
            .claim_deliveries("node-b", now, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let later = store
        .claim_deliveries("node-b", now + 3_600_001, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(later[0].attempts, 1);
    assert_eq!(later[0].last_error.as_deref(), Some("503"));
    let failed = store
        .list_deliveries("1", Some(DeliveryStatus::Failed), 10)
        .await
        .unwrap();
    assert_eq!(failed[0].last_error.as_deref(), Some("gave up"));
    assert!(
        store
            .list_deliveries("2", None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Another app's deliveries count in the worker's backlog, never in this app's counts.
    store
        .enqueue_deliveries("2", &[delivery("http://other-app")])
        .await
        .unwrap();
    let counts = store.delivery_counts("1").await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (1, 1, 1));
    let other = store.delivery_counts("2").await.unwrap();
    assert_eq!((other.pending, other.delivered, other.failed), (1, 0, 0));
    assert_eq!(store.pending_deliveries().await.unwrap(), 2);
}

async fn outbox_leases_expire_and_concurrent_claims_split(store: &dyn Store) {
    let many: Vec<NewDelivery> = (0..40).map(|i| delivery(&format!("http://t{i}"))).collect();
    store.enqueue_deliveries("1", &many).await.unwrap();
    let now = millis();
    let claims = join_all((0..4).map(|n| {
        let node = format!("node-{n}");
        async move { store.claim_deliveries(&node, now, 1_000, 15).await.unwrap() }
    }))
    .await;
    let mut seen = HashSet::new();
    for claim in &claims {
        for d in claim {
            assert!(seen.insert(d.id), "delivery {} claimed twice", d.id);
        }
    }
    assert_eq!(seen.len(), 40);
    // A dead node's claims come back once its lease ends.
    let again = store
        .claim_deliveries("node-x", now + 1_001, 1_000, 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 40);
}

// Housekeeping -------------------------------------------------------------------------------

fn new_app(name: &str) -> App {
    NewApp {
        name: name.into(),
        ..Default::default()
    }
    .into_app()
}

/// Makes events look `secs` older than they are (the store stamps the save time itself).
async fn backdate(store: &SqlStore, events: &[EventRecord], secs: i64) {
    for event in events {
        sqlx::query("UPDATE events SET created = created - $1 WHERE id = $2")
            .bind(secs)
            .bind(event.id)
            .execute(store.pool())
            .await
            .expect("backdate");
    }
}

async fn count(store: &SqlStore, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(store.pool())
        .await
        .expect("count")
}

async fn app_ids_are_handed_out_above_reserved_ones(store: &dyn Store) {
    // Apps 1 and 3 are declared in configuration.
    let first = store.create_app(new_app("a"), &[1, 3]).await.unwrap();
    assert_eq!(first.id, "4");
    let second = store.create_app(new_app("b"), &[1, 3]).await.unwrap();
    assert_eq!(second.id, "5");
    // A process without that configuration continues above, never below.
    let third = store.create_app(new_app("c"), &[]).await.unwrap();
    assert_eq!(third.id, "6");
    // Reserved ids below the counter change nothing; non-positive ones cannot clash.
    let fourth = store.create_app(new_app("d"), &[2, 0, -4]).await.unwrap();
    assert_eq!(fourth.id, "7");
    let far = store.create_app(new_app("e"), &[100]).await.unwrap();
    assert_eq!(far.id, "101");
    assert_eq!(store.list_apps().await.unwrap().len(), 5);
}

async fn expired_events_go_with_their_associations(db: &TestDb) {
    let store = db.open().await;
    subscribe(&store, "1", "u", &["news", "other"]).await;
    let mut old = publish(&store, "1", &["news", "other"]).await;
    old.extend(publish(&store, "1", &["news"]).await);
    old.extend(publish(&store, "1", &["other"]).await);
    backdate(&store, &old, 1_000).await;
    let other_app_old = publish(&store, "2", &["news"]).await;
    backdate(&store, &other_app_old, 1_000).await;
    let young = publish(&store, "1", &["news", "other"]).await;
    let cutoff = now_unix() - 500;

    // Four old events, two per batch, and the young ones stay.
    let which = ExpiredEvents::SavedBefore(cutoff);
    assert_eq!(store.delete_events("1", which, 2).await.unwrap(), 2);
    assert_eq!(store.delete_events("1", which, 2).await.unwrap(), 2);
    assert_eq!(store.delete_events("1", which, 2).await.unwrap(), 0);
    assert_eq!(store.recent_events("1", 0).await.unwrap(), {
        let mut newest_first = young.clone();
        newest_first.reverse();
        newest_first
    });
    // The user's associations with the deleted events went with them.
    assert_eq!(
        store.personal_history("1", "u", 0, 0).await.unwrap(),
        vec![young[0].clone()]
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM associations WHERE app_id = '1'"
        )
        .await,
        1
    );
    // Another app's equally old events are its own retention's business.
    assert_eq!(
        ids(&store.recent_events("2", 0).await.unwrap()),
        ids(&other_app_old)
    );
    store.close().await;
}

async fn channels_beyond_their_limit_keep_the_newest(store: &dyn Store) {
    subscribe(store, "1", "u", &["busy"]).await;
    let mut busy = Vec::new();
    for _ in 0..5 {
        busy.extend(publish(store, "1", &["busy"]).await);
    }
    let calm = publish(store, "1", &["calm"]).await;
    publish(store, "2", &["busy", "busy2"]).await;

    // Keeping 3: the 2nd oldest and everything before it are over.
    let crowded = store.crowded_channels("1", 0, 3).await.unwrap();
    assert_eq!(crowded, vec![("busy".to_owned(), busy[1].id)]);
    // Only channels written after the given id are examined.
    assert!(
        store
            .crowded_channels("1", calm[0].id, 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.crowded_channels("1", busy[3].id, 3).await.unwrap(),
        crowded
    );
    let which = ExpiredEvents::OnChannelThrough {
        channel: "busy",
        through_id: busy[1].id,
    };
    assert_eq!(store.delete_events("1", which, 1).await.unwrap(), 1);
    assert_eq!(store.delete_events("1", which, 1).await.unwrap(), 1);
    assert_eq!(store.delete_events("1", which, 1).await.unwrap(), 0);

    let kept = store.channel_history("1", "busy", 0, 0).await.unwrap();
    assert_eq!(ids(&kept), vec![busy[4].id, busy[3].id, busy[2].id]);
    assert_eq!(store.personal_history("1", "u", 0, 0).await.unwrap(), kept);
    assert_eq!(
        store.channel_history("1", "calm", 0, 0).await.unwrap(),
        calm
    );
    assert!(store.crowded_channels("1", 0, 3).await.unwrap().is_empty());
    assert_eq!(
        store
            .channel_history("2", "busy", 0, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.newest_event_id("1").await.unwrap(), Some(calm[0].id));
    assert_eq!(store.newest_event_id("3").await.unwrap(), None);
}

async fn finished_deliveries_expire_and_pending_ones_stay(store: &dyn Store) {
    let queued = store
        .enqueue_deliveries(
            "1",
            &[
                delivery("http://delivered"),
                delivery("http://failed"),
                delivery("http://retrying"),
                delivery("http://delivered-too"),
            ],
        )
        .await
        .unwrap();
    store
        .enqueue_deliveries("1", &[delivery("http://never-tried")])
        .await
        .unwrap();
    store
        .enqueue_deliveries("2", &[delivery("http://other-app")])
        .await
        .unwrap();
    let now = millis();
    let claimed = store
        .claim_deliveries("node", now, 60_000, 10)
        .await
        .unwrap();
    let id_of = |target: &str| {
        claimed
            .iter()
            .find(|d| d.target == target)
            .map(|d| d.id)
            .expect("claimed")
    };
    for (target, outcome) in [
        ("http://delivered", DeliveryOutcome::Delivered),
        ("http://delivered-too", DeliveryOutcome::Delivered),
        ("http://other-app", DeliveryOutcome::Delivered),
        (
            "http://failed",
            DeliveryOutcome::Failed {
                error: "gone".into(),
            },
        ),
        (
            "http://retrying",
            DeliveryOutcome::Retry {
                next_attempt_ms: now + 1,
                error: "503".into(),
            },
        ),
    ] {
        store
            .finish_delivery(id_of(target), &outcome)
            .await
            .unwrap();
    }
    assert_eq!(queued.len(), 4);

    // Nothing finished before a minute ago.
    assert_eq!(
        store
            .delete_finished_deliveries("1", now - 60_000, 10)
            .await
            .unwrap(),
        0
    );
    // As of later on, the three finished ones go, two per batch; pending ones stay.
    let later = millis() + 1_000;
    assert_eq!(
        store
            .delete_finished_deliveries("1", later, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .delete_finished_deliveries("1", later, 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_finished_deliveries("1", later, 2)
            .await
            .unwrap(),
        0
    );
    let counts = store.delivery_counts("1").await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (2, 0, 0));
    let other = store.delivery_counts("2").await.unwrap();
    assert_eq!(other.delivered, 1, "another app's deliveries stay");
}

async fn expired_sessions_are_purged_in_batches(store: &dyn Store) {
    let tokens = [
        store.create_session("1").await.unwrap(),
        store.create_session("1").await.unwrap(),
        store.create_session("2").await.unwrap(),
    ];
    let now = now_unix();
    assert_eq!(store.purge_expired_sessions(now, 2).await.unwrap(), 0);
    let expired = now + SESSION_TTL_SECS + 1;
    assert_eq!(store.purge_expired_sessions(expired, 2).await.unwrap(), 2);
    assert_eq!(store.purge_expired_sessions(expired, 2).await.unwrap(), 1);
    assert_eq!(store.purge_expired_sessions(expired, 2).await.unwrap(), 0);
    for token in &tokens {
        // The rows are gone, so they fail even as of now.
        assert_eq!(store.session_app(token).await.unwrap(), None);
    }
}

async fn a_sweep_applies_each_apps_retention(db: &TestDb) {
    let store = Arc::new(db.open().await);
    let housekeeper = Housekeeper::new(
        store.clone(),
        HousekeepingConfig {
            every: Duration::from_secs(60),
            batch: 2,
            pause: Duration::ZERO,
        },
    );
    // App "1": an hour of history, 3 events per channel. App "2": keeps every event.
    let mut limited = new_app("limited");
    limited.id = "1".into();
    limited.settings.history_max_age_secs = Some(3_600);
    limited.settings.history_max_per_channel = Some(3);
    let mut keeper = new_app("keeper");
    keeper.id = "2".into();
    keeper.settings.history_max_age_secs = None;
    keeper.settings.history_max_per_channel = None;
    let apps = vec![Arc::new(limited.clone()), Arc::new(keeper.clone())];

    let mut old = Vec::new();
    for _ in 0..3 {
        old.extend(publish(&*store, "1", &["news"]).await);
        old.extend(publish(&*store, "2", &["news"]).await);
    }
    backdate(&store, &old, 7_200).await;
    let mut busy = Vec::new();
    for _ in 0..7 {
        busy.extend(publish(&*store, "1", &["busy"]).await);
        publish(&*store, "2", &["busy"]).await;
    }
    let news = publish(&*store, "1", &["news"]).await;
    let session = store.create_session("2").await.unwrap();
    store
        .enqueue_deliveries("1", &[delivery("http://done"), delivery("http://waiting")])
        .await
        .unwrap();
    let claimed = store
        .claim_deliveries("node", millis(), 60_000, 10)
        .await
        .unwrap();
    let done = claimed.iter().find(|d| d.target == "http://done").unwrap();
    store
        .finish_delivery(done.id, &DeliveryOutcome::Delivered)
        .await
        .unwrap();

    // As of now: app 1 loses its three old events and four busy ones; app 2 keeps all.
    let swept = housekeeper.sweep(&apps, now_unix()).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            expired_events: 3,
            trimmed_events: 4,
            deliveries: 0,
            sessions: 0,
        }
    );
    assert_eq!(
        ids(&store.channel_history("1", "busy", 0, 0).await.unwrap()),
        vec![busy[6].id, busy[5].id, busy[4].id]
    );
    assert_eq!(
        store.channel_history("1", "news", 0, 0).await.unwrap(),
        news
    );
    assert_eq!(store.recent_events("2", 0).await.unwrap().len(), 10);

    // A second sweep finds nothing new; two more events on "busy" push two out.
    assert!(
        housekeeper
            .sweep(&apps, now_unix())
            .await
            .unwrap()
            .is_empty()
    );
    let newer = [
        publish(&*store, "1", &["busy"]).await,
        publish(&*store, "1", &["busy"]).await,
    ]
    .concat();
    let swept = housekeeper.sweep(&apps, now_unix()).await.unwrap();
    assert_eq!(swept.trimmed_events, 2);
    assert_eq!(
        ids(&store.channel_history("1", "busy", 0, 0).await.unwrap()),
        vec![newer[1].id, newer[0].id, busy[6].id]
    );

    // A lower limit applies to every channel at once, written since or not.
    let mut stricter = limited.clone();
    stricter.settings.history_max_per_channel = Some(1);
    let apps = vec![Arc::new(stricter), Arc::new(keeper)];
    let swept = housekeeper.sweep(&apps, now_unix()).await.unwrap();
    assert_eq!(swept.trimmed_events, 2);
    assert_eq!(store.recent_events("1", 0).await.unwrap().len(), 2);

    // A month on: the finished delivery is past its week (pending ones never expire), the
    // session has expired, and app 1's remaining events are past their hour.
    let later = now_unix() + SESSION_TTL_SECS + 1;
    let swept = housekeeper.sweep(&apps, later).await.unwrap();
    assert_eq!(
        swept,
        Swept {
            expired_events: 2,
            trimmed_events: 0,
            deliveries: 1,
            sessions: 1,
        }
    );
    let counts = store.delivery_counts("1").await.unwrap();
    assert_eq!((counts.pending, counts.delivered), (1, 0));
    assert_eq!(store.session_app(&session).await.unwrap(), None);
    assert_eq!(store.recent_events("2", 0).await.unwrap().len(), 10);
    store.close().await;
}

async fn operators_retry_and_give_up_one_apps_deliveries(store: &dyn Store) {
    let queued = store
        .enqueue_deliveries("1", &[delivery("http://a"), delivery("http://b")])
        .await
        .unwrap();
    let (a, b) = (queued[0].id, queued[1].id);
    let now = millis();
    store
        .finish_delivery(
            a,
            &DeliveryOutcome::Failed {
                error: "HTTP 400".into(),
            },
        )
        .await
        .unwrap();

    // Retry: a failed delivery is pending and due again, its reason kept until the next try.
    let retried = store
        .retry_delivery("1", a)
        .await
        .unwrap()
        .expect("retried");
    assert_eq!(retried.status, DeliveryStatus::Pending);
    assert!(retried.next_attempt_ms >= now);
    assert_eq!(retried.last_error.as_deref(), Some("HTTP 400"));
    let claimed = store
        .claim_deliveries("node", millis(), 60_000, 10)
        .await
        .unwrap();
    assert!(
        claimed.iter().any(|d| d.id == a),
        "a retried delivery is claimed at once"
    );

    // Give up: only pending deliveries, with the reason given.
    let given_up = store
        .give_up_delivery("1", b, "given up by operator")
        .await
        .unwrap()
        .expect("given up");
    assert_eq!(given_up.status, DeliveryStatus::Failed);
    assert_eq!(given_up.last_error.as_deref(), Some("given up by operator"));
    assert!(
        store
            .give_up_delivery("1", b, "again")
            .await
            .unwrap()
            .is_none()
    );

    // Delivered deliveries stay delivered; other apps' ids are not found.
    store
        .finish_delivery(a, &DeliveryOutcome::Delivered)
        .await
        .unwrap();
    assert!(store.retry_delivery("1", a).await.unwrap().is_none());
    assert!(
        store
            .give_up_delivery("1", a, "no")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.retry_delivery("2", b).await.unwrap().is_none());
    assert!(
        store
            .give_up_delivery("2", b, "no")
            .await
            .unwrap()
            .is_none()
    );
    let counts = store.delivery_counts("1").await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.failed), (0, 1, 1));
}

/// `bytes` bytes of text that does not compress: the worst case for PostgreSQL, which refuses
/// index rows over 2,704 bytes after compression. CJK characters (3 bytes each) or URL-safe
/// ASCII, picked by a xorshift sequence.
fn incompressible(bytes: usize, seed: u64, ascii: bool) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(bytes);
    let width = if ascii { 1 } else { 3 };
    while out.len() + width <= bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if ascii {
            out.push(char::from(ALPHABET[(x % 64) as usize]));
        } else {
            out.push(char::from_u32(0x4e00 + (x % 20_000) as u32).expect("a CJK character"));
        }
    }
    while out.len() < bytes {
        out.push('a');
    }
    out
}

/// The longest names Pushi's rules admit (1,000-byte channel and event names, a 991-byte user
/// id, the longest `personal-` channel, a 1,500-byte target) fit every table and index.
async fn the_longest_names_fit_every_index(store: &dyn Store) {
    let channel = incompressible(1_000, 1, false);
    let name = incompressible(1_000, 2, false);
    let user = incompressible(991, 3, false);
    let personal = format!("personal-{user}");
    assert_eq!(personal.len(), 1_000);

    store
        .create_subscription("1", &user, &channel)
        .await
        .unwrap();
    assert_eq!(
        store.subscribed_channels("1", &user).await.unwrap(),
        vec![channel.clone()]
    );
    let saved = store
        .save_events("1", &[event(&channel, &name), event(&personal, &name)])
        .await
        .unwrap();
    assert_eq!(saved[0].channel, channel);
    assert_eq!(saved[0].event, name);
    let history = store.channel_history("1", &channel, 0, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    let personal_history = store.personal_history("1", &user, 0, 10).await.unwrap();
    assert_eq!(personal_history[0].channel, channel);

    for (kind, event) in [
        (TargetKind::Web, &channel),
        (TargetKind::WebPush, &personal),
    ] {
        let target = format!(
            "https://push.example.com/{}",
            incompressible(1_475, 4, true)
        );
        assert_eq!(target.len(), 1_500);
        store
            .create_target(
                "1",
                NewTarget {
                    kind,
                    target,
                    event: event.clone(),
                    p256dh: (kind == TargetKind::WebPush).then(|| "p".repeat(87)),
                    auth: (kind == TargetKind::WebPush).then(|| "a".repeat(22)),
                },
            )
            .await
            .unwrap();
    }
    let counts = store.target_counts().await.unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert!(counts.iter().all(|c| c.targets == 1 && c.apps == 1));
}
