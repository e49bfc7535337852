//! Housekeeping at scale: a million stored events (with a million user associations) on
//! SQLite and on PostgreSQL, swept while a publisher keeps saving events.
//!
//! Ignored by default (each backend takes minutes): run with
//! `cargo test --release --test retention_scale -- --ignored --nocapture`. It checks that the
//! sweep leaves nothing retention should have deleted, that publishes kept going with bounded
//! latency meanwhile, and that later sweeps cost what was published since, not the store's
//! size. The timings it prints are what docs/security.md quotes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pushi::app::{App, NewApp};
use pushi::clock::now_unix;
use pushi::store::sql::SqlStore;
use pushi::store::{Housekeeper, HousekeepingConfig, NewEvent, Store};
use sqlx::Connection;

const EVENTS: i64 = 1_000_000;
const CHANNELS: i64 = 1_000;
/// Seconds between two filler events: a million of them span about 35 days.
const SPACING: i64 = 3;
const MAX_AGE: i64 = 30 * 86_400;
const KEEP: u64 = 600;

/// Saves the million events and associations in two statements: events `i` = 1..=EVENTS on
/// channel `ch-{i % CHANNELS}`, the oldest saved `EVENTS * SPACING` seconds ago.
async fn fill(store: &SqlStore, postgres: bool) -> i64 {
    let now = now_unix();
    let first = now - EVENTS * SPACING;
    let numbers = if postgres {
        format!("generate_series(1, {EVENTS}) AS n(i)")
    } else {
        format!(
            "(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {EVENTS}) \
             SELECT i FROM s) AS n"
        )
    };
    let statements = [
        format!(
            "INSERT INTO events (app_id, mid, channel, event, owner_id, timestamp, data, created) \
             SELECT '1', 'mid-' || CAST(i AS TEXT), 'ch-' || CAST(i % {CHANNELS} AS TEXT), 'e', \
                    NULL, 0, '{{\"event\":\"e\",\"data\":\"filler\"}}', {first} + i * {SPACING} \
             FROM {numbers}"
        ),
        format!(
            "INSERT INTO associations (app_id, user_id, mid, created) \
             SELECT '1', 'user-' || CAST(i % 100 AS TEXT), 'mid-' || CAST(i AS TEXT), 0 \
             FROM {numbers}"
        ),
    ];
    for sql in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .expect("fill");
    }
    if postgres {
        sqlx::raw_sql("ANALYZE")
            .execute(store.pool())
            .await
            .expect("analyze");
    }
    first
}

async fn scalar(store: &SqlStore, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(store.pool())
        .await
        .expect("query")
}

/// Saves one event every 5 ms until told to stop; returns the sorted save times.
fn publisher(
    store: Arc<SqlStore>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut took = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            store
                .save_events("1", &[NewEvent::new("live", "e", None, "{}".into())])
                .await
                .expect("publish during the sweep");
            took.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        took.sort();
        took
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

async fn sweep_a_million(url: &str, postgres: bool) {
    let store = Arc::new(SqlStore::connect(url).await.expect("open"));
    let started = Instant::now();
    let first = fill(&store, postgres).await;
    eprintln!("filled {EVENTS} events in {:?}", started.elapsed());
    let mut app: App = NewApp {
        name: "scale".into(),
        ..NewApp::default()
    }
    .into_app();
    app.id = "1".into();
    app.settings.history_max_age_secs = Some(MAX_AGE as u64);
    app.settings.history_max_per_channel = Some(KEEP);
    let apps = vec![Arc::new(app)];
    let keeper = Housekeeper::new(store.clone(), HousekeepingConfig::default());

    let stop = Arc::new(AtomicBool::new(false));
    let publishing = publisher(store.clone(), stop.clone());
    let started = Instant::now();
    let now = now_unix();
    let swept = keeper.sweep(&apps, now).await.expect("sweep");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let latencies = publishing.await.expect("publisher");
    eprintln!(
        "first sweep: {took:?}, {swept:?}; {} publishes meanwhile: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 50),
        percentile(&latencies, 99),
        latencies[latencies.len() - 1],
    );
    // Everything saved before the cutoff went (the filler's i < about 288,000) ...
    let expected_expired = (now - MAX_AGE - first) / SPACING;
    assert!(
        swept.expired_events.abs_diff(expected_expired as u64) <= 1,
        "{swept:?}, expected about {expected_expired} expired"
    );
    let cutoff = now - MAX_AGE;
    let oldest: i64 = scalar(&store, "SELECT MIN(created) FROM events").await;
    assert!(
        oldest >= cutoff,
        "an event saved at {oldest} outlived {cutoff}"
    );
    // ... no channel holds more than KEEP ...
    let fullest = scalar(
        &store,
        "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM events WHERE channel <> 'live' GROUP BY channel) c",
    )
    .await;
    assert!(fullest <= KEEP as i64, "a channel keeps {fullest}");
    assert!(swept.trimmed_events > 100_000, "{swept:?}");
    // ... and no association outlived its event.
    let orphans = scalar(
        &store,
        "SELECT COUNT(*) FROM associations a \
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.app_id = a.app_id AND e.mid = a.mid)",
    )
    .await;
    assert_eq!(orphans, 0);
    // A publish waited for one small batch at most, not for the sweep.
    assert!(percentile(&latencies, 99) < Duration::from_millis(250));

    // Later sweeps cost what was published since.
    for _ in 0..100 {
        store
            .save_events("1", &[NewEvent::new("ch-5", "e", None, "{}".into())])
            .await
            .expect("publish");
    }
    let started = Instant::now();
    let swept = keeper.sweep(&apps, now_unix()).await.expect("sweep");
    let took = started.elapsed();
    eprintln!("second sweep: {took:?}, {swept:?}");
    assert!(took < Duration::from_secs(10));
    let started = Instant::now();
    let swept = keeper.sweep(&apps, now_unix()).await.expect("sweep");
    let took = started.elapsed();
    eprintln!("idle sweep: {took:?}");
    assert!(swept.is_empty());
    assert!(took < Duration::from_secs(1));
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run on purpose"]
async fn a_million_events_on_sqlite() {
    let file = std::env::temp_dir().join(format!("pushi_scale_{}.db", std::process::id()));
    sweep_a_million(&format!("sqlite://{}", file.display()), false).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run on purpose"]
async fn a_million_events_on_postgres() {
    let base = std::env::var("PUSHI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("pushi_scale_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(&base).await.expect("postgres");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("schema");
    let url = format!("{base}?options=-c%20search_path%3D{schema}");
    sweep_a_million(&url, true).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut admin)
        .await
        .expect("drop schema");
}
