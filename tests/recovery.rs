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
