//! `pushi trigger` and `pushi tail`, run as the real binary against a running server: events
//! triggered from the command line reach WebSocket subscribers, `tail` prints what is
//! published on public, private and presence channels (signing the subscriptions itself),
//! and the app's credentials come from the flags or from the server's own store.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{TestServer, WAIT};
use pushi::app::NewApp;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("pushi-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary, run in `dir` with no configuration of its own but what the test passes.
fn pushi(dir: &Scratch) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pushi"));
    command
        .current_dir(&dir.0)
        .env_remove("PUSHI_CONFIG")
        .env_remove("PUSHI_DATABASE_URL")
        .env("PUSHI_LOG", "warn")
        .kill_on_drop(true);
    command
}

fn credentials(server: &TestServer) -> Vec<String> {
    let app = &server.app;
    vec![
        "--app".into(),
        app.id.clone(),
        "--key".into(),
        app.key.clone(),
        "--secret".into(),
        app.secret.clone(),
        "--url".into(),
        format!("http://{}", server.running().http_addr),
    ]
}

#[tokio::test]
async fn trigger_reaches_subscribers_and_reports_refusals() {
    let server = TestServer::start().await;
    let dir = Scratch::new();
    let mut client = server.connect().await;
    client.subscribe("news").await;

    let output = pushi(&dir)
        .arg("trigger")
        .args(credentials(&server))
        .args([
            "--channel",
            "news",
            "--event",
            "headline",
            "--data",
            r#"{"title":"Hi"}"#,
        ])
        .output()
        .await
        .expect("pushi runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "{}");
    let frame = client.recv_event("headline").await;
    assert_eq!(frame["channel"], "news");
    assert_eq!(common::parse_data(&frame), json!({"title": "Hi"}));

    // A wrong secret is refused by the server, and the command says why and fails.
    let mut args = credentials(&server);
    args[5] = "wrong-secret".into();
    let output = pushi(&dir)
        .arg("trigger")
        .args(args)
        .args(["--channel", "news", "--event", "e", "--data", "{}"])
        .output()
        .await
        .expect("pushi runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("Invalid signature"),
        "{stderr}"
    );

    // A server that is not there is named.
    let output = pushi(&dir)
        .args([
            "trigger",
            "--app",
            "1",
            "--key",
            "k",
            "--secret",
            "s",
            "--url",
            "http://127.0.0.1:9",
        ])
        .args(["--channel", "news", "--event", "e", "--data", "{}"])
        .output()
        .await
        .expect("pushi runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
}

/// Waits until the server counts `n` subscriptions on `channel`.
async fn subscribed(server: &TestServer, channel: &str) {
    for _ in 0..200 {
        let state = server.running().hub.existing_state(&server.app.id);
        if state.is_some_and(|s| s.channel_stats(channel).is_some()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("tail never subscribed to {channel}");
}

#[tokio::test]
async fn tail_prints_events_of_public_private_and_presence_channels() {
    let server = TestServer::start().await;
    let dir = Scratch::new();
    let mut tail = pushi(&dir)
        .arg("tail")
        .args(credentials(&server))
        .args([
            "--channel",
            "news",
            "--channel",
            "private-orders",
            "--channel",
            "presence-room",
        ])
        .args([
            "--user-id",
            "ops",
            "--user-info",
            r#"{"name":"Ops"}"#,
            "--count",
            "3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail starts");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let connected = async {
        for channel in ["news", "private-orders", "presence-room"] {
            subscribed(&server, channel).await;
        }
    };
    tokio::time::timeout(WAIT, connected)
        .await
        .expect("tail subscribes in time");
    let members = server
        .running()
        .hub
        .existing_state(&server.app.id)
        .expect("state")
        .presence_user_ids("presence-room");
    assert_eq!(
        members,
        ["ops"],
        "tail joined the presence channel as --user-id"
    );

    for (channel, data) in [
        ("news", "plain text"),
        ("private-orders", r#"{"id":7}"#),
        ("presence-room", r#"{"text":"hello"}"#),
    ] {
        let (status, body) = server.trigger(channel, "update", data).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut printed = Vec::new();
    while let Some(line) = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("stdout readable")
    {
        printed.push(serde_json::from_str::<Value>(&line).expect("one JSON object per line"));
    }
    assert_eq!(
        printed,
        [
            json!({"channel": "news", "event": "update", "data": "plain text"}),
            json!({"channel": "private-orders", "event": "update", "data": {"id": 7}}),
            json!({"channel": "presence-room", "event": "update", "data": {"text": "hello"}}),
        ]
    );
    let status = tokio::time::timeout(WAIT, tail.wait())
        .await
        .expect("tail exits")
        .expect("status");
    assert!(status.success(), "tail exits 0 after --count events");
}

#[tokio::test]
async fn a_refused_subscription_ends_tail_with_the_reason() {
    let server = TestServer::start().await;
    let dir = Scratch::new();
    let mut args = credentials(&server);
    args[5] = "wrong-secret".into();
    let output = tokio::time::timeout(
        WAIT,
        pushi(&dir)
            .arg("tail")
            .args(args)
            .args(["--channel", "private-orders"])
            .output(),
    )
    .await
    .expect("tail ends in time")
    .expect("pushi runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("private-orders"), "{stderr}");
}

#[tokio::test]
async fn credentials_come_from_the_servers_own_store() {
    let dir = Scratch::new();
    let database = format!("sqlite://{}/pushi.db", dir.0.display());
    let server = TestServer::start_with(|c| {
        c.database_url = database.clone();
        // Clear of the ids the store gives created apps.
        c.static_apps = vec![common::test_app("900")];
    })
    .await;
    let app = server
        .running()
        .hub
        .apps
        .create(NewApp {
            name: "stored".into(),
            ..NewApp::default()
        })
        .await
        .expect("app created");
    let mut client = common::Client::open(&format!(
        "ws://{}/app/{}?protocol=7",
        server.running().ws_addr,
        app.key
    ))
    .await;
    client.recv_event("pusher:connection_established").await;
    client.subscribe("news").await;

    let output = pushi(&dir)
        .args(["--database-url", &database, "trigger", "--app", &app.id])
        .args(["--url", &format!("http://{}", server.running().http_addr)])
        .args([
            "--channel",
            "news",
            "--event",
            "stored-creds",
            "--data",
            "\"ok\"",
        ])
        .output()
        .await
        .expect("pushi runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let frame = client.recv_event("stored-creds").await;
    assert_eq!(common::parse_data(&frame), json!("ok"));

    let output = pushi(&dir)
        .args(["--database-url", &database, "trigger", "--app", "404"])
        .args(["--channel", "news", "--event", "e", "--data", "1"])
        .output()
        .await
        .expect("pushi runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no app with id \"404\""));
}

#[tokio::test]
async fn apps_set_takes_every_setting_the_rest_api_takes() {
    let dir = Scratch::new();
    let database = format!("sqlite://{}/pushi.db", dir.0.display());
    let output = pushi(&dir)
        .args([
            "--database-url",
            &database,
            "apps",
            "create",
            "--name",
            "cli-set",
        ])
        .output()
        .await
        .expect("pushi runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("app id:"))
        .map(|id| id.trim().to_owned())
        .expect("the id is printed");
    let vapid_key = pushi::notify::web_push::generate_vapid_key();
    let smtp_url = "smtp://user:hunter2@mail.example.com:2525?sender=noreply@example.com";
    let output = pushi(&dir)
        .args(["--database-url", &database, "apps", "set", &id])
        .arg(format!("smtp_url={smtp_url}"))
        .arg(format!("vapid_key={vapid_key}"))
        .args([
            "client_events=0",
            "max_payload_bytes=2048",
            "history_max_age_secs=null",
            "apn_sandbox=yes",
            "vapid_email=ops@example.com",
            r#"webhooks=[{"url":"https://hooks.example.com/in"}]"#,
        ])
        .output()
        .await
        .expect("pushi runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let shown: Value = serde_json::from_slice(&output.stdout).expect("settings as JSON");
    assert_eq!(shown["smtp_url"], json!(true));
    assert_eq!(shown["vapid_key"], json!(true));
    assert_eq!(shown["client_events"], json!(false));
    assert_eq!(shown["max_payload_bytes"], json!(2048));
    assert_eq!(shown["history_max_age_secs"], Value::Null);
    assert_eq!(shown["apn_sandbox"], json!(true));
    assert_eq!(shown["webhooks"][0]["url"], "https://hooks.example.com/in");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("hunter2"));

    for (change, field) in [
        ("apn_key_id=short", "apn_key_id"),
        ("smtp_url=ftp://mail.example.com", "smtp_url"),
        ("vapid_key=garbage", "vapid_key"),
        ("colour=blue", "colour"),
    ] {
        let output = pushi(&dir)
            .args(["--database-url", &database, "apps", "set", &id, change])
            .output()
            .await
            .expect("pushi runs");
        assert!(!output.status.success(), "{change} is refused");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("{field}: ")), "{change}: {stderr}");
    }
}
