//! The admin API behind the dashboard, on a real server: who may sign in and reach which
//! app, creating and changing apps, rotating secrets, the live view and its event stream,
//! publishing, and looking after the outbox (retry now, give up) with a real webhook
//! receiver.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::any;
use base64::Engine;
use common::{TestServer, WAIT};
use serde_json::{Value, json};

const TOKEN: &str = "admin-token-for-tests";

/// How a request signs in.
#[derive(Clone)]
enum Auth {
    None,
    Admin,
    Token(&'static str),
    App(String, String),
}

impl Auth {
    fn app(app: &Value) -> Self {
        Self::App(
            app["key"].as_str().expect("key").to_owned(),
            app["secret"].as_str().expect("secret").to_owned(),
        )
    }

    fn header(&self) -> Option<String> {
        match self {
            Self::None => None,
            Self::Admin => Some(format!("Bearer {TOKEN}")),
            Self::Token(t) => Some(format!("Bearer {t}")),
            Self::App(key, secret) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
            )),
        }
    }
}

/// A server with the admin token and one configured app, whose id ("900") stays clear of
/// the ids the store gives created apps.
async fn start() -> TestServer {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut pushi::config::Config)) -> TestServer {
    TestServer::start_with(|c| {
        c.admin_token = Some(TOKEN.into());
        c.static_apps = vec![common::test_app("900")];
        c.notify.request_timeout = Duration::from_secs(2);
        adjust(c);
    })
    .await
}

async fn call(
    server: &TestServer,
    auth: &Auth,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", server.running().http_addr);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = server.http.request(method, url);
    if let Some(header) = auth.header() {
        request = request.header("authorization", header);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create_app(server: &TestServer, name: &str, extra: Value) -> Value {
    let mut body = json!({ "name": name });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, app) = call(server, &Auth::Admin, "POST", "/admin/api/apps", Some(body)).await;
    assert_eq!(status, 201, "create: {app}");
    app
}

#[tokio::test]
async fn signing_in_needs_the_admin_token_or_an_apps_key_and_secret() {
    let server = start().await;
    let (status, body) = call(&server, &Auth::None, "GET", "/admin/api/session", None).await;
    assert_eq!(status, 401);
    assert!(
        body["message"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    let (status, _) = call(
        &server,
        &Auth::Token("nope"),
        "GET",
        "/admin/api/session",
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = call(&server, &Auth::Admin, "GET", "/admin/api/session", None).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("admin")));

    let app = &server.app;
    let own = Auth::App(app.key.clone(), app.secret.clone());
    let (status, body) = call(&server, &own, "GET", "/admin/api/session", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"role": "app", "app_id": app.id}));
    let wrong = Auth::App(app.key.clone(), "not-the-secret".into());
    let (status, _) = call(&server, &wrong, "GET", "/admin/api/session", None).await;
    assert_eq!(status, 401);
    let unknown = Auth::App("no-such-key".into(), app.secret.clone());
    let (status, _) = call(&server, &unknown, "GET", "/admin/api/session", None).await;
    assert_eq!(status, 401);

    // Without a configured token, the admin cannot sign in at all (and is told why).
    let tokenless = TestServer::start().await;
    let (status, body) = call(&tokenless, &Auth::Admin, "GET", "/admin/api/session", None).await;
    assert_eq!(status, 401);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PUSHI_ADMIN_TOKEN")
    );
}

#[tokio::test]
async fn an_apps_credentials_reach_that_app_and_no_other() {
    let server = start().await;
    let a = create_app(&server, "tenant-a", json!({})).await;
    let b = create_app(&server, "tenant-b", json!({})).await;
    let as_a = Auth::app(&a);
    let a_id = a["id"].as_str().unwrap();
    let b_id = b["id"].as_str().unwrap();

    let (status, list) = call(&server, &as_a, "GET", "/admin/api/apps", None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a_id], "an app lists only itself");
    let (status, all) = call(&server, &Auth::Admin, "GET", "/admin/api/apps", None).await;
    assert_eq!(status, 200);
    assert_eq!(all["apps"].as_array().unwrap().len(), 3, "{all}");

    let (status, own) = call(
        &server,
        &as_a,
        "GET",
        &format!("/admin/api/apps/{a_id}"),
        None,
    )
    .await;
    assert_eq!((status, own["name"].as_str()), (200, Some("tenant-a")));

    // Every route naming the other app is refused, and nothing about it leaks.
    let other = format!("/admin/api/apps/{b_id}");
    let attempts: [(&str, String, Option<Value>); 9] = [
        ("GET", other.clone(), None),
        ("PATCH", other.clone(), Some(json!({"name": "taken"}))),
        ("POST", format!("{other}/secret"), None),
        ("GET", format!("{other}/live"), None),
        ("GET", format!("{other}/stream"), None),
        (
            "POST",
            format!("{other}/events"),
            Some(json!({"channel": "c", "event": "e", "data": "x"})),
        ),
        ("GET", format!("{other}/deliveries"), None),
        ("POST", format!("{other}/deliveries/1/retry"), None),
        ("POST", format!("{other}/deliveries/1/give_up"), None),
    ];
    for (method, path, body) in attempts {
        let (status, reply) = call(&server, &as_a, method, &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {reply}");
        assert!(!reply.to_string().contains(b["secret"].as_str().unwrap()));
        assert!(!reply.to_string().contains("tenant-b"), "{reply}");
    }
    let (_, b_now) = call(&server, &Auth::Admin, "GET", &other, None).await;
    assert_eq!(b_now["name"], "tenant-b", "b is unchanged");
    assert_eq!(b_now["secret"], b["secret"], "b's secret is unchanged");

    // Creating apps and enabling or disabling one is the admin's.
    let (status, _) = call(
        &server,
        &as_a,
        "POST",
        "/admin/api/apps",
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 403);
    let path = format!("/admin/api/apps/{a_id}");
    let (status, _) = call(
        &server,
        &as_a,
        "PATCH",
        &path,
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &server,
        &Auth::Admin,
        "PATCH",
        &path,
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(&server, &as_a, "GET", &path, None).await;
    assert_eq!(
        status, 403,
        "a disabled app's credentials are refused: {body}"
    );
}

#[tokio::test]
async fn apps_are_created_and_changed_with_every_setting_checked() {
    let server = start().await;
    let (status, body) = call(
        &server,
        &Auth::Admin,
        "POST",
        "/admin/api/apps",
        Some(json!({"name": "shop", "max_payload_bytes": 0})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("max_payload_bytes:"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        &Auth::Admin,
        "POST",
        "/admin/api/apps",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &server,
        &Auth::Admin,
        "POST",
        "/admin/api/apps",
        Some(json!([1])),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let app = create_app(
        &server,
        "shop",
        json!({"description": "the shop", "client_events": false, "max_connections": 50}),
    )
    .await;
    assert_eq!(app["settings"]["client_events"], false);
    assert_eq!(app["settings"]["max_connections"], 50);
    assert_eq!(app["description"], "the shop");
    assert_eq!(app["configured"], false);
    assert_eq!(app["secret"].as_str().unwrap().len(), 64);
    let path = format!("/admin/api/apps/{}", app["id"].as_str().unwrap());

    let changes = json!({
        "name": "shop-2",
        "webhooks": [{"url": "https://example.com/hook", "event_types": ["member_added"]}],
        "smtp_url": "smtps://user:password@mail.example.com:465?sender=a@example.com",
        "apn_topic": "com.example.app",
        "apn_sandbox": true,
        "vapid_email": "ops@example.com",
        "history_max_age_secs": null,
        "deliveries_max_age_secs": 3600,
    });
    let (status, changed) = call(&server, &Auth::Admin, "PATCH", &path, Some(changes)).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "shop-2");
    let settings = &changed["settings"];
    assert_eq!(settings["webhooks"][0]["url"], "https://example.com/hook");
    assert_eq!(
        settings["smtp_url"], true,
        "secrets are only reported as set"
    );
    assert!(!changed.to_string().contains("password"));
    assert_eq!(settings["apn_topic"], "com.example.app");
    assert_eq!(settings["history_max_age_secs"], Value::Null);
    assert_eq!(settings["deliveries_max_age_secs"], 3600);
    assert_eq!(
        settings["client_events"], false,
        "unnamed settings are kept"
    );

    for (bad, field) in [
        (json!({"webhooks": [{"url": "ftp://x"}]}), "webhooks[0].url"),
        (json!({"max_presence_members": -3}), "max_presence_members"),
        (json!({"no_such_setting": 1}), "no_such_setting"),
        (json!({"name": ""}), "name"),
    ] {
        let (status, body) = call(&server, &Auth::Admin, "PATCH", &path, Some(bad)).await;
        assert_eq!(status, 400);
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{message}");
    }
    let (_, unchanged) = call(&server, &Auth::Admin, "GET", &path, None).await;
    assert_eq!(
        unchanged["name"], "shop-2",
        "a refused change changes nothing"
    );

    // The running server uses the new settings at once.
    let stored = server
        .running()
        .hub
        .apps
        .by_id(app["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.settings.delivery.apn_topic.as_deref(),
        Some("com.example.app")
    );

    let (status, _) = call(&server, &Auth::Admin, "GET", "/admin/api/apps/999", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn rotating_the_secret_retires_the_old_one_at_once() {
    let server = start().await;
    let app = create_app(&server, "rotating", json!({})).await;
    let id = app["id"].as_str().unwrap().to_owned();
    let old = Auth::app(&app);
    let (status, rotated) = call(
        &server,
        &old,
        "POST",
        &format!("/admin/api/apps/{id}/secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["secret"], app["secret"]);
    assert_eq!(rotated["key"], app["key"], "the key stays");
    let (status, _) = call(&server, &old, "GET", "/admin/api/session", None).await;
    assert_eq!(status, 401, "the old secret no longer signs in");
    let (status, _) = call(
        &server,
        &Auth::app(&rotated),
        "GET",
        "/admin/api/session",
        None,
    )
    .await;
    assert_eq!(status, 200);

    // Pusher's HTTP API: signatures with the old secret fail, with the new one succeed.
    let mut as_app = common::test_app(&id);
    as_app.key = app["key"].as_str().unwrap().into();
    as_app.secret = app["secret"].as_str().unwrap().into();
    let path = format!("/apps/{id}/events");
    let event = json!({"name": "e", "channel": "c", "data": "x"});
    let (status, _) = server
        .api_as(&as_app, "POST", &path, &[], Some(&event))
        .await;
    assert_eq!(status, 401);
    as_app.secret = rotated["secret"].as_str().unwrap().into();
    let (status, body) = server
        .api_as(&as_app, "POST", &path, &[], Some(&event))
        .await;
    assert_eq!(status, 200, "{body}");

    // An app declared in the configuration is changed there, not here.
    let configured = format!("/admin/api/apps/{}", server.app.id);
    let (status, body) = call(
        &server,
        &Auth::Admin,
        "POST",
        &format!("{configured}/secret"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    assert!(
        body["message"].as_str().unwrap().contains("configuration"),
        "{body}"
    );
    let (status, _) = call(
        &server,
        &Auth::Admin,
        "PATCH",
        &configured,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(status, 409);
}

/// Reads Server-Sent Events from a streaming response.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    async fn open(server: &TestServer, auth: &Auth, path: &str) -> Self {
        let url = format!("http://{}{path}", server.running().http_addr);
        let response = server
            .http
            .get(url)
            .header("authorization", auth.header().unwrap())
            .send()
            .await
            .expect("stream opens");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event: its name and JSON data.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return (name, serde_json::from_str(&data).expect("JSON data"));
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .expect("stream readable")
                .expect("stream open");
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Skips events until `want` accepts one.
    async fn until(&mut self, want: impl Fn(&str, &Value) -> bool) -> Value {
        loop {
            let (name, data) = self.next().await;
            if want(&name, &data) {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn the_live_view_and_debug_stream_follow_sockets_and_events() {
    let server = start().await;
    let app = &server.app;
    let base = format!("/admin/api/apps/{}", app.id);
    let own = Auth::App(app.key.clone(), app.secret.clone());
    let mut stream = EventStream::open(&server, &own, &format!("{base}/stream")).await;
    let first = stream.until(|name, _| name == "snapshot").await;
    assert_eq!(first["connections"], 0);

    let mut client = server.connect().await;
    let socket = client.socket_id.clone();
    stream
        .until(|name, d| {
            name == "debug" && d["type"] == "connected" && d["socket_id"] == socket.as_str()
        })
        .await;
    client
        .join_presence(&server, "presence-room", "alice", json!({"name": "Alice"}))
        .await;
    let joined = stream
        .until(|name, d| name == "debug" && d["type"] == "subscribed")
        .await;
    assert_eq!(joined["channel"], "presence-room");
    assert_eq!(joined["user_id"], "alice");
    let snapshot = stream
        .until(|name, d| name == "snapshot" && d["channel_count"] == 1)
        .await;
    assert_eq!(snapshot["connections"], 1);
    let channel = &snapshot["channels"][0];
    assert_eq!(channel["name"], "presence-room");
    assert_eq!(channel["subscription_count"], 1);
    assert_eq!(channel["user_count"], 1);
    assert_eq!(
        channel["members"][0],
        json!({"id": "alice", "info": {"name": "Alice"}})
    );
    assert_eq!(snapshot["sockets"][0]["socket_id"], socket.as_str());

    // The same, asked once.
    let (status, live) = call(&server, &own, "GET", &format!("{base}/live"), None).await;
    assert_eq!(status, 200);
    assert_eq!(live["channels"], snapshot["channels"]);

    // Publishing from the admin API reaches the socket and shows in the stream.
    let (status, published) = call(
        &server,
        &own,
        "POST",
        &format!("{base}/events"),
        Some(json!({"channel": "presence-room", "event": "greeting", "data": {"text": "hi"}})),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["frames"], 1);
    let frame = client.recv_event("greeting").await;
    assert_eq!(common::parse_data(&frame), json!({"text": "hi"}));
    let debug = stream
        .until(|name, d| name == "debug" && d["type"] == "published")
        .await;
    assert_eq!(debug["channels"], json!(["presence-room"]));
    assert_eq!(debug["event"], "greeting");
    assert_eq!(debug["data"], r#"{"text":"hi"}"#);
    assert_eq!(debug["frames"], 1);
    assert_eq!(debug["remote"], false);

    // Events from the Pusher HTTP API show too.
    let (status, _) = server.trigger("presence-room", "from-api", "payload").await;
    assert_eq!(status, 200);
    let debug = stream
        .until(|name, d| name == "debug" && d["type"] == "published")
        .await;
    assert_eq!(
        (debug["event"].as_str(), debug["data"].as_str()),
        (Some("from-api"), Some("payload"))
    );

    drop(client);
    stream
        .until(|name, d| name == "debug" && d["type"] == "unsubscribed" && d["user_id"] == "alice")
        .await;
    stream
        .until(|name, d| name == "debug" && d["type"] == "disconnected")
        .await;
    let empty = stream
        .until(|name, d| name == "snapshot" && d["connections"] == 0)
        .await;
    assert_eq!(empty["channels"], json!([]));

    for (bad, field) in [
        (json!({"event": "e", "data": "x"}), "channel"),
        (
            // The operator publishes under Pushi's wider rules: only what could break a
            // frame or a log line is refused.
            json!({"channel": "bad\nname", "event": "e", "data": "x"}),
            "channel",
        ),
        (json!({"channel": "c", "data": "x"}), "event"),
        (json!({"channel": "c", "event": "e"}), "data"),
        (
            json!({"channel": "c", "event": "e", "data": "x", "socket_id": "x"}),
            "socket_id",
        ),
    ] {
        let (status, body) =
            call(&server, &own, "POST", &format!("{base}/events"), Some(bad)).await;
        assert_eq!(status, 400);
        assert!(
            body["message"].as_str().unwrap().starts_with(field),
            "{body}"
        );
    }
}

/// A webhook receiver answering with the status it is told.
#[derive(Clone)]
struct Receiver {
    statuses: Arc<Mutex<VecDeque<u16>>>,
    default: Arc<Mutex<u16>>,
    hits: Arc<Mutex<usize>>,
}

impl Receiver {
    async fn start(default: u16) -> (Self, SocketAddr) {
        let receiver = Self {
            statuses: Arc::default(),
            default: Arc::new(Mutex::new(default)),
            hits: Arc::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = receiver.clone();
        let app = axum::Router::new().fallback(any(move || {
            let state = state.clone();
            async move {
                *state.hits.lock().unwrap() += 1;
                let status = state
                    .statuses
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or(*state.default.lock().unwrap());
                StatusCode::from_u16(status).unwrap()
            }
        }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn answer(&self, status: u16) {
        *self.default.lock().unwrap() = status;
    }
}

/// Polls the app's outbox until `want` accepts its deliveries.
async fn outbox_until(
    server: &TestServer,
    auth: &Auth,
    app_id: &str,
    want: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let path = format!("/admin/api/apps/{app_id}/deliveries");
    let mut last = Vec::new();
    for _ in 0..200 {
        let (status, body) = call(server, auth, "GET", &path, None).await;
        assert_eq!(status, 200, "{body}");
        last = body["deliveries"].as_array().cloned().unwrap_or_default();
        if want(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("outbox never got there: {last:?}");
}

#[tokio::test]
async fn the_operator_retries_and_gives_up_deliveries() {
    let server = start_with(|c| {
        // A failed attempt waits a minute: only the operator makes it happen sooner.
        c.notify.base_backoff = Duration::from_secs(60);
        c.notify.max_backoff = Duration::from_secs(60);
        common::allow_loopback(c);
    })
    .await;
    let (receiver, addr) = Receiver::start(400).await;
    let app = create_app(
        &server,
        "hooks",
        json!({"webhooks": [{"url": format!("http://{addr}/hook"), "event_types": ["channel_occupied"]}]}),
    )
    .await;
    let id = app["id"].as_str().unwrap().to_owned();
    let auth = Auth::app(&app);

    // A 400 gives up at once, with the receiver's answer as the reason.
    let mut client = common::Client::open(&format!(
        "ws://{}/app/{}?protocol=7",
        server.running().ws_addr,
        app["key"].as_str().unwrap()
    ))
    .await;
    client.recv_event("pusher:connection_established").await;
    client.subscribe("orders").await;
    let failed = outbox_until(&server, &auth, &id, |d| {
        d.first().is_some_and(|d| d["status"] == "failed")
    })
    .await;
    let delivery = failed[0]["id"].as_i64().unwrap();
    assert!(
        failed[0]["last_error"].as_str().unwrap().contains("400"),
        "{failed:?}"
    );

    // Retry now: the receiver accepts this time.
    receiver.answer(200);
    let base = format!("/admin/api/apps/{id}/deliveries/{delivery}");
    let (status, retried) = call(&server, &auth, "POST", &format!("{base}/retry"), None).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "pending");
    outbox_until(&server, &auth, &id, |d| d[0]["status"] == "delivered").await;
    let (status, body) = call(&server, &auth, "POST", &format!("{base}/retry"), None).await;
    assert_eq!(status, 409, "a delivered delivery is not retried: {body}");
    assert!(body["message"].as_str().unwrap().contains("delivered"));

    // A receiver that fails with 503 leaves the delivery pending for a minute; giving up ends it.
    receiver.answer(503);
    let hits = *receiver.hits.lock().unwrap();
    client
        .send(json!({"event": "pusher:subscribe", "data": {"channel": "returns"}}))
        .await;
    let pending = outbox_until(&server, &auth, &id, |d| {
        d.len() == 2 && d[0]["status"] == "pending" && d[0]["attempts"] == 1
    })
    .await;
    assert!(*receiver.hits.lock().unwrap() > hits);
    let delivery = pending[0]["id"].as_i64().unwrap();
    let base = format!("/admin/api/apps/{id}/deliveries/{delivery}");
    let (status, given_up) = call(&server, &auth, "POST", &format!("{base}/give_up"), None).await;
    assert_eq!(status, 200, "{given_up}");
    assert_eq!(given_up["status"], "failed");
    assert_eq!(given_up["last_error"], "given up by operator");
    let (status, _) = call(&server, &auth, "POST", &format!("{base}/give_up"), None).await;
    assert_eq!(status, 409, "only pending deliveries are given up");
    let (_, listed) = call(
        &server,
        &auth,
        "GET",
        &format!("/admin/api/apps/{id}/deliveries?status=failed"),
        None,
    )
    .await;
    assert_eq!(listed["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        listed["counts"],
        json!({"pending": 0, "delivered": 1, "failed": 1})
    );

    // Unknown ids, other apps' ids and nonsense are told apart.
    let (status, _) = call(
        &server,
        &auth,
        "POST",
        &format!("/admin/api/apps/{id}/deliveries/99999/retry"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let configured = Auth::App(server.app.key.clone(), server.app.secret.clone());
    let path = format!(
        "/admin/api/apps/{}/deliveries/{delivery}/retry",
        server.app.id
    );
    let (status, _) = call(&server, &configured, "POST", &path, None).await;
    assert_eq!(
        status, 404,
        "another app's delivery is not found through this app"
    );
    let (status, _) = call(
        &server,
        &auth,
        "POST",
        &format!("/admin/api/apps/{id}/deliveries/abc/retry"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &server,
        &auth,
        "GET",
        &format!("/admin/api/apps/{id}/deliveries?status=lost"),
        None,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_dashboard_and_the_api_description_are_served() {
    let server = start().await;
    let url = |path: &str| format!("http://{}{path}", server.running().http_addr);
    let page = server.http.get(url("/dashboard/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let etag = page.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("/dashboard/dashboard.js")
    );
    let again = server
        .http
        .get(url("/dashboard/"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        304,
        "an unchanged asset is revalidated, not resent"
    );
    for (asset, kind) in [
        ("dashboard.js", "text/javascript"),
        ("dashboard.css", "text/css"),
    ] {
        let response = server
            .http
            .get(url(&format!("/dashboard/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert_eq!(response.headers()["cache-control"], "no-cache");
    }
    let missing = server
        .http
        .get(url("/dashboard/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(url("/dashboard"))
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 308);

    let doc: Value = server
        .http
        .get(url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn in_a_cluster_each_node_streams_its_own_view_with_remote_publishes_marked() {
    let namespace = format!("admin-api-{}-{}", std::process::id(), uuid::Uuid::new_v4());
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let mut cluster = pushi::cluster::ClusterConfig::new("redis://127.0.0.1:6379".into());
        cluster.namespace = namespace.clone();
        cluster.node_id = name.into();
        cluster.heartbeat = Duration::from_millis(200);
        nodes.push(start_with(move |c| c.cluster = Some(cluster)).await);
    }
    for _ in 0..100 {
        let joined = nodes.iter().all(|n| {
            n.running()
                .cluster
                .as_ref()
                .is_some_and(|c| c.peers().len() == 1)
        });
        if joined {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let own = Auth::App(b.app.key.clone(), b.app.secret.clone());
    let mut stream =
        EventStream::open(b, &own, &format!("/admin/api/apps/{}/stream", b.app.id)).await;
    let first = stream.until(|name, _| name == "snapshot").await;
    assert_eq!(first["node"], "node-b", "the stream says whose view it is");

    let mut client = a.connect().await;
    client.subscribe("news").await;
    let seen = stream
        .until(|name, d| name == "snapshot" && d["channel_count"] == 1)
        .await;
    assert_eq!(
        seen["channels"][0]["name"], "news",
        "channel counts are cluster-wide"
    );
    assert_eq!(seen["sockets"], json!([]), "sockets are this node's");

    let (status, _) = a.trigger("news", "from-a", "hello").await;
    assert_eq!(status, 200);
    let published = stream
        .until(|name, d| name == "debug" && d["type"] == "published")
        .await;
    assert_eq!(published["event"], "from-a");
    assert_eq!(published["remote"], true);
    assert_eq!(published["frames"], 0, "no socket of node b is subscribed");
    client.recv_event("from-a").await;
}
