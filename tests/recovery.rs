//! Crash recovery with a real process: an acknowledged persisted publish, its subscriptions
//! and personal aliases survive `kill -9` and a restart on the same SQLite file.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::parse_data;
use serde_json::{Value, json};

struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn spawn(db: &str, port: u16) -> Process {
    pushi::install_crypto_provider();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pushi"))
        .args(["serve", "--port", &port.to_string(), "--database-url", db])
        .env("PUSHI_APP_ID", "1")
        .env("PUSHI_APP_KEY", "recovery-key")
        .env("PUSHI_APP_SECRET", "recovery-secret")
        .env("PUSHI_LOG", "warn")
        // The webhook receiver runs on this machine.
        .env("PUSHI_OUTBOUND_ALLOW", "127.0.0.1")
        // Retry quickly so the test does not wait for real backoff.
        .env("PUSHI_DELIVERY_BACKOFF_MS", "100")
        .env("PUSHI_DELIVERY_TIMEOUT", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("server starts");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{base}/health/ready")).await
            && r.status().is_success()
        {
            return Process { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not become ready");
}

/// Logs in to the test app the Pushi way; returns the session token.
async fn login(base: &str) -> String {
    let credentials = [
        ("app_id", "1"),
        ("app_key", "recovery-key"),
        ("app_secret", "recovery-secret"),
    ];
    call(base, reqwest::Method::GET, "/login", &credentials, None).await["token"]
        .as_str()
        .expect("a token")
        .to_owned()
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Value {
    let client = reqwest::Client::new();
    let mut request = client.request(method, format!("{base}{path}")).query(query);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

#[tokio::test]
async fn persisted_state_survives_kill_dash_nine() {
    let dir = std::env::temp_dir().join(format!("pushi-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("pushi.db").display());
    let port = free_port();

    let mut server = spawn(&db, port).await;
    let token = login(&server.base).await;
    let sid = [("sid", token.as_str())];
    call(
        &server.base,
        reqwest::Method::POST,
        "/subscriptions",
        &sid,
        Some(json!({"user_id": "u1", "event": "news"})),
    )
    .await;
    let ack = call(
        &server.base,
        reqwest::Method::POST,
        "/events",
        &sid,
        Some(json!({"data": "kept", "channel": "news"})),
    )
    .await;
    assert_eq!(ack, json!({"result": "success"}));

    // SIGKILL: no shutdown code runs.
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let server = spawn(&db, port).await;
    // The session token survived too.
    let events = call(&server.base, reqwest::Method::GET, "/events", &sid, None).await;
    assert_eq!(events["events"][0]["data"]["data"], "kept");
    let subs = call(
        &server.base,
        reqwest::Method::GET,
        "/subscriptions",
        &sid,
        None,
    )
    .await;
    assert_eq!(subs["subscriptions"][0]["event"], "news");

    // The personal alias and the user's history are back.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/recovery-key"))
            .await
            .unwrap();
    use futures_util::{SinkExt, StreamExt};
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| -> Value {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    };
    let established = next(&mut ws).await;
    let socket_id = parse_data(&established)["socket_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = pushi::auth::auth_string(
        "recovery-key",
        "recovery-secret",
        &pushi::auth::channel_auth_message(&socket_id, "personal-u1", None),
    );
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        json!({"event": "pusher:subscribe", "data": {"channel": "personal-u1", "auth": auth}})
            .to_string(),
    ))
    .await
    .unwrap();
    let reply = next(&mut ws).await;
    let data = parse_data(&reply);
    assert_eq!(data["alias"], json!(["news"]));
    assert_eq!(data["events"][0]["data"]["data"], "kept");
    drop(server);
    std::fs::remove_dir_all(dir).ok();
}

/// A minimal webhook receiver: counts requests and keeps their bodies and delivery ids.
async fn receiver(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> {
    use axum::http::HeaderMap;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |headers: HeaderMap, body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let id = headers
                    .get("x-pushi-delivery")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                store
                    .lock()
                    .unwrap()
                    .push((id, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                "ok"
            }
        },
    ));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    seen
}

#[tokio::test]
async fn pending_deliveries_survive_kill_dash_nine() {
    let dir = std::env::temp_dir().join(format!("pushi-outbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("pushi.db").display());
    let port = free_port();
    let hook_port = free_port();

    let mut server = spawn(&db, port).await;
    let token = login(&server.base).await;
    let sid = [("sid", token.as_str())];
    let url = format!("http://127.0.0.1:{hook_port}/hook");
    call(
        &server.base,
        reqwest::Method::POST,
        "/webs",
        &sid,
        Some(json!({"url": url, "event": "orders"})),
    )
    .await;
    // The receiver is down: the publish is acknowledged and the delivery stays pending.
    call(
        &server.base,
        reqwest::Method::POST,
        "/events",
        &sid,
        Some(json!({"data": "order 1", "channel": "orders"})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let seen = receiver(hook_port).await;
    let _server = spawn(&db, port).await;
    // At most one lease (2 × timeout + 5 s) passes before another node may take a delivery
    // the killed one had claimed.
    for _ in 0..300 {
        if !seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the pending delivery was not resumed after the restart"
    );
    assert_eq!(seen[0].1["data"], "order 1");
    assert!(!seen[0].0.is_empty(), "delivery id header");
    assert!(
        seen.iter().all(|(id, _)| *id == seen[0].0),
        "one delivery, one id"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// A fresh PostgreSQL schema for one test in `PUSHI_TEST_POSTGRES_URL` (by default the local
/// `test` database): the server's database URL and the schema's name. `None` when it is
/// unreachable and `PUSHI_TEST_SKIP_POSTGRES=1` says to skip.
async fn postgres_schema(case: &str) -> Option<(String, String)> {
    use sqlx::Connection;
    let base = std::env::var("PUSHI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut admin = match sqlx::PgConnection::connect(&base).await {
        Ok(conn) => conn,
        Err(e) if std::env::var("PUSHI_TEST_SKIP_POSTGRES").as_deref() == Ok("1") => {
            eprintln!("skipping the PostgreSQL case {case}: {e}");
            return None;
        }
        Err(e) => panic!(
            "PostgreSQL at {base} is unreachable ({e}); start it, point PUSHI_TEST_POSTGRES_URL \
             at one, or set PUSHI_TEST_SKIP_POSTGRES=1"
        ),
    };
    let schema = format!("pushi_recovery_{}_{case}", std::process::id());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE; CREATE SCHEMA \"{schema}\""
    )))
    .execute(&mut admin)
    .await
    .expect("create the test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    Some((
        format!("{base}{sep}options=-c%20search_path%3D{schema}"),
        schema,
    ))
}

/// Removes a schema made by [`postgres_schema`].
async fn drop_postgres_schema(schema: &str) {
    use sqlx::Connection;
    let base = std::env::var("PUSHI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    if let Ok(mut admin) = sqlx::PgConnection::connect(&base).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
        )))
        .execute(&mut admin)
        .await;
    }
}

/// Publishers in the burst, each sending its next event as soon as the last was answered.
const BURST_PUBLISHERS: usize = 32;
/// Acknowledged publishes before the kill: enough that many are in flight together.
const ACKED_BEFORE_KILL: usize = 600;

/// Kills the server (SIGKILL) in the middle of a burst of concurrent persisted publishes,
/// restarts it, and checks that every publish answered 200 is stored, once, and that each
/// publisher's events are stored in the order it published them. Publishes cut off by the
/// kill may or may not be stored: they were never acknowledged.
async fn acknowledged_burst_survives_kill_dash_nine(db: &str) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let port = free_port();
    let mut server = spawn(db, port).await;
    let token = login(&server.base).await;
    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut publishers = Vec::new();
    for p in 0..BURST_PUBLISHERS {
        let base = server.base.clone();
        let token = token.clone();
        let acked_total = acked_total.clone();
        publishers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acked = Vec::new();
            for i in 0.. {
                let data = format!("p{p}-{i}");
                // Two channels per publish on odd publishers: one transaction saves both.
                let channel = if p % 2 == 1 {
                    json!(["burst", format!("side-{p}")])
                } else {
                    json!("burst")
                };
                let sent = client
                    .post(format!("{base}/events"))
                    .query(&[("sid", token.as_str())])
                    .json(&json!({"data": data, "channel": channel}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != reqwest::StatusCode::OK {
                    break;
                }
                match response.json::<Value>().await {
                    Ok(body) if body == json!({"result": "success"}) => {}
                    _ => break,
                }
                acked.push(data);
                acked_total.fetch_add(1, Ordering::Relaxed);
            }
            acked
        }));
    }
    while acked_total.load(Ordering::Relaxed) < ACKED_BEFORE_KILL {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SIGKILL while the publishers keep going: no shutdown code runs.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let mut acked = Vec::new();
    for publisher in publishers {
        acked.push(publisher.await.unwrap());
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total >= ACKED_BEFORE_KILL);

    let _server = spawn(db, port).await;
    let store = pushi::store::open(db).await.expect("open the store");
    use pushi::store::Store;
    let stored = store.channel_history("1", "burst", 0, 0).await.unwrap();
    let mut position = std::collections::HashMap::new();
    for event in &stored {
        let message: Value = serde_json::from_str(&event.data).unwrap();
        let data = message["data"].as_str().unwrap().to_owned();
        assert!(
            position.insert(data.clone(), event.id).is_none(),
            "{data} stored twice"
        );
    }
    for (p, events) in acked.iter().enumerate() {
        let mut last = 0;
        for data in events {
            let id = *position
                .get(data)
                .unwrap_or_else(|| panic!("{data} was acknowledged but is not stored"));
            assert!(id > last, "publisher {p}: {data} stored out of order");
            last = id;
        }
        if p % 2 == 1 && !events.is_empty() {
            let side = store
                .channel_history("1", &format!("side-{p}"), 0, 0)
                .await
                .unwrap();
            let side: std::collections::HashSet<Value> = side
                .iter()
                .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["data"].clone())
                .collect();
            for data in events {
                assert!(
                    side.contains(&json!(data)),
                    "{data} missing on its second channel"
                );
            }
        }
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_burst_survives_kill_dash_nine_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("pushi-burst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("pushi.db").display());
    acknowledged_burst_survives_kill_dash_nine(&db).await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_burst_survives_kill_dash_nine_on_postgres() {
    if let Some((db, schema)) = postgres_schema("burst").await {
        acknowledged_burst_survives_kill_dash_nine(&db).await;
        drop_postgres_schema(&schema).await;
    }
}
