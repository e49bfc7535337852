//! Test harness: a real server on an ephemeral port, a real WebSocket client, a signing HTTP
//! client. Shared by the integration test files.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use pushi::app::{App, AppSettings};
use pushi::auth;
use pushi::config::{Config, Flags};
use pushi::server::{self, RunningServer};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub server: Option<RunningServer>,
    pub app: App,
    pub http: reqwest::Client,
    base: String,
}

pub fn test_app(id: &str) -> App {
    App {
        id: id.into(),
        key: format!("key-{id}"),
        secret: format!("secret-{id}"),
        name: format!("app-{id}"),
        ident: format!("ident-{id}"),
        enabled: true,
        settings: AppSettings::default(),
        description: None,
        created: 0,
        modified: 0,
    }
}

/// A config on an ephemeral port with an in-memory store and app "1".
pub fn test_config() -> Config {
    pushi::install_crypto_provider();
    let mut config = Config::load(&Flags::default(), &|_| None).expect("default config");
    config.http_port = 0;
    config.ws_port = 0;
    config.database_url = "sqlite::memory:".into();
    config.static_apps = vec![test_app("1")];
    config
}

/// The loopback ranges, for the outbound allow-list of tests whose receivers run on this
/// machine (the policy refuses loopback by default).
pub fn loopback() -> Vec<ipnet::IpNet> {
    vec![
        "127.0.0.0/8".parse().expect("a CIDR range"),
        "::1/128".parse().expect("a CIDR range"),
    ]
}

/// Lets the server deliver to receivers on this machine.
pub fn allow_loopback(config: &mut Config) {
    config.notify.outbound_allow = loopback();
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config();
        adjust(&mut config);
        let app = config.static_apps[0].clone();
        let server = server::start(config).await.expect("server starts");
        let base = format!("http://{}", server.http_addr);
        Self {
            server: Some(server),
            app,
            http: reqwest::Client::new(),
            base,
        }
    }

    /// Sends API requests through `http` to `base` (an `https://` URL, say) from now on.
    pub fn use_client(&mut self, http: reqwest::Client, base: String) {
        self.http = http;
        self.base = base;
    }

    /// A GET as the operator's private listener (`admin_addr`) would serve it, through the
    /// server's router: `/metrics` and `/health/detailed` need no token there.
    pub async fn operator_get(&self, path: &str) -> (u16, Value) {
        use http_body_util::BodyExt;
        use tower::ServiceExt;
        let mut request = axum::http::Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(pushi::listener::ListenerRole::Operator);
        let response = self
            .running()
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router answers");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn running(&self) -> &RunningServer {
        self.server.as_ref().expect("server running")
    }

    pub fn ws_url(&self, key: &str) -> String {
        format!(
            "ws://{}/app/{key}?protocol=7&client=test&version=1",
            self.running().ws_addr
        )
    }

    /// Connects with the app's key and reads `connection_established`.
    pub async fn connect(&self) -> Client {
        let mut client = Client::open(&self.ws_url(&self.app.key)).await;
        let established = client.recv_event("pusher:connection_established").await;
        let data = parse_data(&established);
        client.socket_id = data["socket_id"].as_str().expect("socket_id").to_owned();
        client
    }

    pub fn sign_channel(
        &self,
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> String {
        auth::auth_string(
            &self.app.key,
            &self.app.secret,
            &auth::channel_auth_message(socket_id, channel, channel_data),
        )
    }

    /// A signed Pusher HTTP API request.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.api_as(&self.app, method, path, query, body).await
    }

    pub async fn api_as(
        &self,
        app: &App,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        let body_text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        params.push(("auth_key".into(), app.key.clone()));
        params.push((
            "auth_timestamp".into(),
            pushi::clock::now_unix().to_string(),
        ));
        params.push(("auth_version".into(), "1.0".into()));
        if !body_text.is_empty() {
            params.push(("body_md5".into(), auth::body_md5(body_text.as_bytes())));
        }
        let signature = auth::sign(
            &app.secret,
            &auth::request_string_to_sign(method, path, &params),
        );
        params.push(("auth_signature".into(), signature));
        self.raw(method, path, &params, body_text).await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        params: &[(String, String)],
        body: String,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let response = self
            .http
            .request(method, url)
            .query(params)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn trigger(&self, channel: &str, event: &str, data: &str) -> (u16, Value) {
        let path = format!("/apps/{}/events", self.app.id);
        self.api(
            "POST",
            &path,
            &[],
            Some(&json!({"name": event, "channel": channel, "data": data})),
        )
        .await
    }

    pub async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

/// Parses a Pusher frame's double-encoded `data`.
pub fn parse_data(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
        other => other.clone(),
    }
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub socket_id: String,
}

/// How a read ended when no frame came.
#[derive(Debug, PartialEq)]
pub enum Ended {
    Closed(Option<u16>),
    Timeout,
}

impl Client {
    pub async fn open(url: &str) -> Self {
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        Self {
            ws,
            socket_id: String::new(),
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// The next JSON frame, or how the stream ended.
    pub async fn next(&mut self, wait: Duration) -> Result<Value, Ended> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Err(Ended::Timeout),
                Ok(None) | Ok(Some(Err(_))) => return Err(Ended::Closed(None)),
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("server sends JSON"));
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Err(Ended::Closed(frame.map(|f| u16::from(f.code))));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        self.next(WAIT).await.expect("a frame")
    }

    /// Skips frames until one with `event`.
    pub async fn recv_event(&mut self, event: &str) -> Value {
        loop {
            let frame = self
                .next(WAIT)
                .await
                .unwrap_or_else(|e| panic!("waiting for {event}: {e:?}"));
            if frame["event"] == event {
                return frame;
            }
        }
    }

    /// Asserts nothing (but pings) arrives for `ms`.
    pub async fn expect_silence(&mut self, ms: u64) {
        match self.next(Duration::from_millis(ms)).await {
            Err(Ended::Timeout) => {}
            other => panic!("expected silence, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns the close code.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.next(WAIT).await {
                Ok(_) => continue,
                Err(Ended::Closed(code)) => return code,
                Err(Ended::Timeout) => panic!("server did not close"),
            }
        }
    }

    /// Round trip proving the connection still works.
    pub async fn assert_alive(&mut self) {
        self.send(json!({"event": "pusher:ping", "data": {}})).await;
        self.recv_event("pusher:pong").await;
    }

    pub async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel}}))
            .await;
        self.recv().await
    }

    pub async fn subscribe_signed(&mut self, server: &TestServer, channel: &str) -> Value {
        let auth = server.sign_channel(&self.socket_id, channel, None);
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}))
            .await;
        self.recv().await
    }

    pub async fn join_presence(
        &mut self,
        server: &TestServer,
        channel: &str,
        user_id: &str,
        info: Value,
    ) -> Value {
        let channel_data = json!({"user_id": user_id, "user_info": info}).to_string();
        let auth = server.sign_channel(&self.socket_id, channel, Some(&channel_data));
        self.send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}))
            .await;
        self.recv_event("pusher_internal:subscription_succeeded")
            .await
    }

    pub async fn signin(&mut self, server: &TestServer, user_data: &Value) -> Value {
        let user_data = user_data.to_string();
        let auth = auth::auth_string(
            &server.app.key,
            &server.app.secret,
            &auth::signin_message(&self.socket_id, &user_data),
        );
        self.send(
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        )
        .await;
        self.recv().await
    }
}

impl TestServer {
    /// Connects in Pushi's dialect (`/{key}`) and reads `connection_established`.
    pub async fn connect_pushi(&self) -> Client {
        let url = format!("ws://{}/{}", self.running().ws_addr, self.app.key);
        let mut client = Client::open(&url).await;
        let established = client.recv_event("pusher:connection_established").await;
        client.socket_id = parse_data(&established)["socket_id"]
            .as_str()
            .expect("socket_id")
            .to_owned();
        client
    }

    /// Logs into Pushi's REST API; returns the session token.
    pub async fn pushi_login(&self) -> String {
        self.pushi_login_as(&self.app).await
    }

    /// Logs into Pushi's REST API as another of the server's apps.
    pub async fn pushi_login_as(&self, app: &App) -> String {
        let (status, body) = self
            .rest(
                "GET",
                "/login",
                &[
                    ("app_id", &app.ident),
                    ("app_key", &app.key),
                    ("app_secret", &app.secret),
                ],
                None,
                None,
            )
            .await;
        assert_eq!(status, 200, "login: {body}");
        body["token"].as_str().expect("token").to_owned()
    }

    /// A Pushi REST call, with the session token as `sid` when given.
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        sid: Option<&str>,
    ) -> (u16, Value) {
        let mut params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Some(sid) = sid {
            params.push(("sid".into(), sid.into()));
        }
        self.raw(
            method,
            path,
            &params,
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .await
    }
}

impl Client {
    /// Pushi subscribe (`data` is an object); returns the reply frame.
    pub async fn pushi_subscribe(
        &mut self,
        channel: &str,
        auth: Option<String>,
        channel_data: Option<Value>,
    ) -> Value {
        let mut data = json!({"channel": channel});
        if let Some(auth) = auth {
            data["auth"] = json!(auth);
        }
        if let Some(cd) = channel_data {
            data["channel_data"] = cd;
        }
        self.send(json!({"event": "pusher:subscribe", "data": data}))
            .await;
        self.recv().await
    }
}
