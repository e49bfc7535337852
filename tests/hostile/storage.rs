//! Storage: tenants that must never share an id or a key, a store that must not grow for
//! ever, a damaged database file, and a clean stop that leaves a complete database file.
//!
//! Real servers and real HTTP throughout; the damaged-file and clean-stop cases run the real
//! binary. Housekeeping is driven by calling a sweep with a chosen "now" (what a background
//! sweep does days later), plus one case where the background task itself does the work.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pushi::app::{App, NewApp};
use pushi::clock::now_unix;
use pushi::store::{Housekeeper, HousekeepingConfig, SESSION_TTL_SECS, Store};
use serde_json::{Value, json};

use crate::common::{Ended, TestServer};

// Harness -------------------------------------------------------------------------------------

/// A directory of its own for one case, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(case: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "pushi-storage-{case}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The real binary, run in `dir` (so no stray `pushi.toml` is read) on `db`, with the static
/// app 1 when `static_app` says so.
fn pushi(dir: &TempDir, db: &Path, static_app: Option<(&str, &str)>) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_pushi"));
    command
        .current_dir(&dir.0)
        .args(["--database-url", &sqlite_url(db)])
        .env_remove("PUSHI_CONFIG")
        .env_remove("PUSHI_DATABASE_URL")
        .env_remove("PUSHI_APP_ID")
        .env_remove("PUSHI_APP_KEY")
        .env_remove("PUSHI_APP_SECRET")
        .env("PUSHI_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some((key, secret)) = static_app {
        command
            .env("PUSHI_APP_ID", "1")
            .env("PUSHI_APP_KEY", key)
            .env("PUSHI_APP_SECRET", secret);
    }
    command
}

/// Runs the binary to its end (at most `limit`): status, stdout, stderr and how long it took.
async fn run_to_end(
    mut command: tokio::process::Command,
    limit: Duration,
) -> (std::process::ExitStatus, String, String, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("pushi still running after {limit:?}"))
        .expect("pushi runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// The static app's events, as Pushi's REST API lists them: the `data` of each, newest first.
async fn listed_data(server: &TestServer, token: &str) -> Vec<String> {
    let (status, list) = server
        .rest("GET", "/events", &[("count", "100")], None, Some(token))
        .await;
    assert_eq!(status, 200, "{list}");
    list["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["data"]["data"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn post_event(server: &TestServer, token: &str, channel: &str, data: &str) {
    let body = json!({"data": data, "event": "e", "channel": channel});
    let (status, reply) = server
        .rest("POST", "/events", &[], Some(&body), Some(token))
        .await;
    assert_eq!(status, 200, "{reply}");
}

/// A housekeeper over the running server's store, sweeping in batches of 2.
fn housekeeper(server: &TestServer) -> Housekeeper {
    Housekeeper::new(
        server.running().hub.apps.store().clone(),
        HousekeepingConfig {
            every: Duration::from_secs(60),
            batch: 2,
            pause: Duration::ZERO,
        },
    )
}

async fn all_apps(server: &TestServer) -> Vec<Arc<App>> {
    server.running().hub.apps.all().await.expect("apps")
}

// Tenant ids and keys ------------------------------------------------------------------------

/// A second tenant publishes on the static app's channel name: the static app's subscriber
/// must not hear it, and the static app's own signed publish must still be accepted.
async fn assert_tenants_apart(server: &TestServer, tenant: &App) {
    assert_ne!(
        tenant.id, server.app.id,
        "the stored app took the static id"
    );
    assert_ne!(tenant.key, server.app.key);
    let mut ours = server.connect().await;
    ours.subscribe("news").await;
    let mut theirs = crate::common::Client::open(&server.ws_url(&tenant.key)).await;
    theirs.recv_event("pusher:connection_established").await;
    theirs.subscribe("news").await;

    let path = format!("/apps/{}/events", tenant.id);
    let body = json!({"name": "theirs", "channel": "news", "data": "{}"});
    let (status, reply) = server.api_as(tenant, "POST", &path, &[], Some(&body)).await;
    assert_eq!(status, 200, "the tenant's own publish: {reply}");
    assert_eq!(theirs.recv_event("theirs").await["channel"], "news");

    let (status, reply) = server.trigger("news", "ours", "{}").await;
    assert_eq!(
        status, 200,
        "the static app's publish must still verify: {reply}"
    );
    let got = ours.next(Duration::from_secs(2)).await;
    assert_eq!(
        got.map(|f| f["event"].clone()),
        Ok(json!("ours")),
        "the static app's subscriber gets its own event, and only that"
    );
    assert_eq!(
        theirs.next(Duration::from_millis(300)).await,
        Err(Ended::Timeout)
    );
}

#[tokio::test]
async fn an_app_created_through_the_registry_never_takes_a_static_id_or_key() {
    // `pushi apps create` and the first start create apps through the registry.
    let server = TestServer::start().await;
    let tenant = server
        .running()
        .hub
        .apps
        .create(NewApp {
            name: "tenant".into(),
            ..NewApp::default()
        })
        .await
        .expect("created");
    assert_tenants_apart(&server, &tenant).await;
}

#[tokio::test]
async fn post_apps_never_takes_a_static_id_and_the_tenants_stay_apart() {
    let server = TestServer::start_with(|c| c.open_apps = true).await;
    let (status, created) = server
        .rest("POST", "/apps", &[], Some(&json!({"name": "tenant"})), None)
        .await;
    assert_eq!(status, 200, "{created}");
    let tenant = App {
        id: created["app_id"].as_str().expect("app_id").to_owned(),
        key: created["key"].as_str().expect("key").to_owned(),
        secret: created["secret"].as_str().expect("secret").to_owned(),
        ..server.app.clone()
    };
    assert_tenants_apart(&server, &tenant).await;
}

#[tokio::test]
async fn the_cli_skips_configured_ids_and_a_clash_made_elsewhere_stops_the_server() {
    let dir = TempDir::new("cli");
    let db = dir.file("pushi.db");
    let create = |name: &str, static_app| {
        let mut command = pushi(&dir, &db, static_app);
        command.args(["apps", "create", "--name", name]);
        command
    };
    let limit = Duration::from_secs(20);

    // With the configuration that declares app 1, the CLI hands out 2.
    let (status, out, err, _) = run_to_end(create("first", Some(("k1", "s1"))), limit).await;
    assert!(status.success(), "{err}");
    assert!(out.contains("app id:  2\n"), "{out}");

    // A CLI run without that configuration, on a fresh database, takes id 1...
    let other = dir.file("other.db");
    let mut command = pushi(&dir, &other, None);
    command.args(["apps", "create", "--name", "elsewhere"]);
    let (status, out, err, _) = run_to_end(command, limit).await;
    assert!(status.success(), "{err}");
    assert!(out.contains("app id:  1\n"), "{out}");
    let stored_key = out
        .lines()
        .find_map(|l| l.strip_prefix("key:"))
        .expect("key printed")
        .trim()
        .to_owned();

    // ...and a server declaring app 1 on that database refuses to start, naming the clash.
    let mut serve = pushi(&dir, &other, Some(("k1", "s1")));
    serve.args(["serve", "--port", &free_port().to_string()]);
    let (status, _, err, took) = run_to_end(serve, limit).await;
    assert!(!status.success());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        err.contains("\"elsewhere\" (id 1) has the id 1 of the configured app"),
        "{err}"
    );
    // So does one whose configured app has the stored app's key under another id.
    let mut serve = pushi(&dir, &other, None);
    serve
        .env("PUSHI_APP_ID", "7")
        .env("PUSHI_APP_KEY", &stored_key)
        .env("PUSHI_APP_SECRET", "s7")
        .args(["serve", "--port", &free_port().to_string()]);
    let (status, _, err, _) = run_to_end(serve, limit).await;
    assert!(!status.success());
    assert!(err.contains("has the key of the configured app"), "{err}");
}

// Retention ----------------------------------------------------------------------------------

#[tokio::test]
async fn old_events_and_events_over_a_channels_limit_go_while_new_ones_stay() {
    let server = TestServer::start_with(|c| {
        let settings = &mut c.static_apps[0].settings;
        settings.history_max_age_secs = Some(60);
        settings.history_max_per_channel = Some(3);
    })
    .await;
    let token = server.pushi_login().await;
    let (status, _) = server
        .rest(
            "POST",
            "/subscriptions",
            &[],
            Some(&json!({"user_id": "u", "event": "quiet"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    post_event(&server, &token, "quiet", "old").await;
    let store = server.running().hub.apps.store().clone();
    let old_saved = store.recent_events(&server.app.id, 1).await.expect("saved")[0].created;
    // Everything after this is saved at least a second later.
    while now_unix() <= old_saved {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post_event(&server, &token, "quiet", "new").await;
    for i in 1..=5 {
        post_event(&server, &token, "busy", &format!("busy-{i}")).await;
    }
    assert_eq!(listed_data(&server, &token).await.len(), 7);

    // 61 seconds after the old event was saved, only it is past the 60-second age.
    let swept = housekeeper(&server)
        .sweep(&all_apps(&server).await, old_saved + 61)
        .await
        .expect("sweep");
    assert_eq!((swept.expired_events, swept.trimmed_events), (1, 2));
    assert_eq!(
        listed_data(&server, &token).await,
        vec!["busy-5", "busy-4", "busy-3", "new"]
    );
    // The user's association with the old event went with it.
    let personal = store
        .personal_history(&server.app.id, "u", 0, 0)
        .await
        .expect("personal history");
    assert_eq!(personal.len(), 1);
    assert!(personal[0].data.contains("\"new\""), "{personal:?}");
}

#[tokio::test]
async fn the_background_task_enforces_retention_on_its_own() {
    let server = TestServer::start_with(|c| {
        c.static_apps[0].settings.history_max_per_channel = Some(2);
        c.housekeeping.every = Duration::from_millis(200);
    })
    .await;
    let token = server.pushi_login().await;
    for i in 1..=5 {
        post_event(&server, &token, "busy", &format!("busy-{i}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let listed = listed_data(&server, &token).await;
        if listed == ["busy-5", "busy-4"] {
            break;
        }
        assert!(Instant::now() < deadline, "still {listed:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A webhook receiver that answers 200 to everything.
async fn accepting_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(axum::routing::any(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn finished_deliveries_past_their_age_go_and_pending_ones_stay() {
    let server = TestServer::start_with(crate::common::allow_loopback).await;
    let token = server.pushi_login().await;
    let up = accepting_receiver().await;
    // Reserve a port and close it: that receiver is down, its delivery stays pending.
    let down = format!("http://127.0.0.1:{}/hook", free_port());
    for url in [&up, &down] {
        let (status, reply) = server
            .rest(
                "POST",
                "/webs",
                &[],
                Some(&json!({"url": url, "event": "orders"})),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    post_event(&server, &token, "orders", "order 1").await;
    let statuses = async || -> Vec<(String, String)> {
        let (status, list) = server
            .rest("GET", "/deliveries", &[], None, Some(&token))
            .await;
        assert_eq!(status, 200, "{list}");
        let mut found: Vec<(String, String)> = list["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .map(|d| {
                (
                    d["target"].as_str().unwrap_or_default().to_owned(),
                    d["status"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        found.sort();
        found
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !statuses().await.contains(&(up.clone(), "delivered".into())) {
        assert!(
            Instant::now() < deadline,
            "not delivered: {:?}",
            statuses().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A day from now nothing is old enough; eight days from now the finished one is.
    let keeper = housekeeper(&server);
    let apps = all_apps(&server).await;
    let swept = keeper
        .sweep(&apps, now_unix() + 86_400)
        .await
        .expect("sweep");
    assert_eq!(swept.deliveries, 0);
    let swept = keeper
        .sweep(&apps, now_unix() + 8 * 86_400)
        .await
        .expect("sweep");
    assert_eq!(swept.deliveries, 1);
    assert_eq!(statuses().await, vec![(down, "pending".to_owned())]);
}

#[tokio::test]
async fn expired_login_sessions_are_purged() {
    let server = TestServer::start().await;
    let token = server.pushi_login().await;
    let keeper = housekeeper(&server);
    let apps = all_apps(&server).await;
    assert_eq!(
        keeper
            .sweep(&apps, now_unix())
            .await
            .expect("sweep")
            .sessions,
        0
    );
    let (status, _) = server.rest("GET", "/events", &[], None, Some(&token)).await;
    assert_eq!(status, 200);
    // Once the session has expired, its row is deleted, not merely refused.
    let swept = keeper
        .sweep(&apps, now_unix() + SESSION_TTL_SECS + 1)
        .await
        .expect("sweep");
    assert_eq!(swept.sessions, 1);
    let store = server.running().hub.apps.store();
    assert_eq!(store.session_app(&token).await.expect("lookup"), None);
    let (status, _) = server.rest("GET", "/events", &[], None, Some(&token)).await;
    assert_ne!(status, 200);
}

// A damaged database -------------------------------------------------------------------------

/// Starts the real server on a damaged file: it must stop within seconds, with one line that
/// names the file.
async fn refuses_damaged(dir: &TempDir, db: &Path, cause: &str) {
    let mut serve = pushi(dir, db, Some(("k1", "s1")));
    // The default log level: nothing else may be printed.
    serve
        .env_remove("PUSHI_LOG")
        .args(["serve", "--port", &free_port().to_string()]);
    let (status, _, err, took) = run_to_end(serve, Duration::from_secs(40)).await;
    assert!(!status.success(), "started on a damaged file");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].contains(&db.display().to_string()), "{err}");
    assert!(lines[0].contains(cause), "{err}");
}

#[tokio::test]
async fn a_garbage_database_file_stops_the_start_at_once_naming_the_file() {
    let dir = TempDir::new("garbage");
    let db = dir.file("pushi.db");
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&db, garbage).expect("write");
    refuses_damaged(&dir, &db, "not a database").await;
}

#[tokio::test]
async fn a_truncated_database_file_stops_the_start_at_once_naming_the_file() {
    let dir = TempDir::new("truncated");
    let db = dir.file("pushi.db");
    let store = pushi::store::open(&sqlite_url(&db)).await.expect("open");
    let padding = "x".repeat(2_000);
    for i in 0..200 {
        let event = pushi::store::NewEvent::new(
            "news",
            "e",
            None,
            format!("{{\"n\":{i},\"p\":\"{padding}\"}}"),
        );
        store.save_events("1", &[event]).await.expect("save");
    }
    store.close().await;
    let whole = std::fs::read(&db).expect("read");
    assert!(whole.len() > 200_000, "{} bytes", whole.len());
    std::fs::write(&db, &whole[..whole.len() / 2]).expect("truncate");
    refuses_damaged(&dir, &db, "malformed").await;
}

// A clean stop -------------------------------------------------------------------------------

#[tokio::test]
async fn after_sigterm_the_database_file_alone_holds_every_acknowledged_event() {
    let dir = TempDir::new("stop");
    let db = dir.file("pushi.db");
    let port = free_port();
    let mut serve = pushi(&dir, &db, Some(("stop-key", "stop-secret")));
    serve
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut child = serve.spawn().expect("server starts");
    pushi::install_crypto_provider();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/health/ready")).send().await
            && r.status().is_success()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "server did not become ready");
    let login: Value = http
        .get(format!("{base}/login"))
        .query(&[
            ("app_id", "1"),
            ("app_key", "stop-key"),
            ("app_secret", "stop-secret"),
        ])
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let sid = login["token"].as_str().expect("token").to_owned();

    // Publishes keep coming while the server is told to stop; the ones it acknowledged must
    // all be in the file.
    let publisher = tokio::spawn({
        let (http, base, sid) = (http.clone(), base.clone(), sid.clone());
        async move {
            let mut acknowledged = Vec::new();
            for i in 0..100_000 {
                let data = format!("event-{i}");
                let sent = http
                    .post(format!("{base}/events"))
                    .query(&[("sid", sid.as_str())])
                    .json(&json!({"data": data, "channel": "news"}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => acknowledged.push(data),
                    Ok(_) => continue,
                    Err(_) => break,
                }
            }
            acknowledged
        }
    });
    // Another process reading the file (a backup, the CLI) keeps its log open: SQLite's own
    // clean-up when the server's last connection closes cannot help then.
    let mut observer = <sqlx::SqliteConnection as sqlx::Connection>::connect(&sqlite_url(&db))
        .await
        .expect("observer connects");
    sqlx::query("SELECT COUNT(*) FROM sqlite_master")
        .fetch_one(&mut observer)
        .await
        .expect("observer reads");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = child.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("stopped within 20 s")
        .expect("exit status");
    assert!(status.success(), "{status:?}");
    let acknowledged = publisher.await.expect("publisher");
    assert!(
        acknowledged.len() >= 5,
        "only {} publishes",
        acknowledged.len()
    );

    let wal = dir.file("pushi.db-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "the write-ahead log still holds data");
    // A copy of the one file, alone.
    let copy_dir = TempDir::new("stop-copy");
    let copy = copy_dir.file("copy.db");
    std::fs::copy(&db, &copy).expect("copy");
    let store = pushi::store::open(&sqlite_url(&copy))
        .await
        .expect("open copy");
    let stored: HashSet<String> = store
        .channel_history("1", "news", 0, 0)
        .await
        .expect("history")
        .into_iter()
        .map(|e| {
            let snapshot: Value = serde_json::from_str(&e.data).expect("snapshot");
            snapshot["data"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    store.close().await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|d| !stored.contains(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not in the file: {missing:?}"
    );
    sqlx::Connection::close(observer)
        .await
        .expect("observer closes");
}
