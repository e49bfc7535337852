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
    let login = [
        ("app_id", "1"),
        ("app_key", "recovery-key"),
        ("app_secret", "recovery-secret"),
    ];
    let token = call(&server.base, reqwest::Method::GET, "/login", &login, None).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
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
    let login = [
        ("app_id", "1"),
        ("app_key", "recovery-key"),
        ("app_secret", "recovery-secret"),
    ];
    let token = call(&server.base, reqwest::Method::GET, "/login", &login, None).await["token"]
        .as_str()
        .unwrap()
        .to_owned();
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
