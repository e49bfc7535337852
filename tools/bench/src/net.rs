//! The server under test: WebSocket subscribers and HTTP publishers, in either dialect.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::sign;

/// Which wire protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Pusher Channels protocol 7: `/app/{key}?protocol=7`, signed `POST /apps/{id}/events`.
    Pusher,
    /// The original Pushi's: `/{key}`, `GET /login` then `POST /events?sid=`.
    Pushi,
}

/// Everything needed to reach one server.
#[derive(Debug)]
pub struct Target {
    pub host: String,
    pub ws_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub app_id: String,
    pub key: String,
    pub secret: String,
    pub dialect: Dialect,
    /// Local addresses client sockets are spread over (loopback only), to multiply the
    /// ephemeral port space; empty = let the kernel choose.
    pub source_ips: Vec<IpAddr>,
    next_source: AtomicUsize,
    /// Send what a browser sends with its upgrade (Origin, User-Agent, Accept-Language, a
    /// cookie, a permessage-deflate offer), so the server's per-handshake cost is a browser's.
    pub browser_headers: bool,
}

/// How long any single handshake, subscription or HTTP request may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);

impl Target {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        host: &str,
        ws_port: u16,
        http_port: u16,
        app_id: &str,
        key: &str,
        secret: &str,
        dialect: Dialect,
        source_ips: u8,
    ) -> Result<Self> {
        let resolve = |port: u16| -> Result<SocketAddr> {
            use std::net::ToSocketAddrs;
            (host, port)
                .to_socket_addrs()
                .with_context(|| format!("resolving {host}"))?
                .next()
                .ok_or_else(|| anyhow!("{host} has no address"))
        };
        let ws_addr = resolve(ws_port)?;
        let http_addr = resolve(http_port)?;
        let source_ips = match ws_addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && source_ips > 1 => (0..source_ips)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + i)))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Target {
            host: host.to_string(),
            ws_addr,
            http_addr,
            app_id: app_id.to_string(),
            key: key.to_string(),
            secret: secret.to_string(),
            dialect,
            source_ips,
            next_source: AtomicUsize::new(0),
            browser_headers: false,
        })
    }

    fn ws_url(&self) -> String {
        let authority = format!("{}:{}", self.host, self.ws_addr.port());
        match self.dialect {
            Dialect::Pusher => format!(
                "ws://{authority}/app/{}?protocol=7&client=pushi-bench&version={}",
                self.key,
                env!("CARGO_PKG_VERSION")
            ),
            Dialect::Pushi => format!("ws://{authority}/{}", self.key),
        }
    }

    /// The upgrade request: tungstenite's own headers, plus a browser's when asked.
    fn ws_request(&self) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderValue;
        let mut request = self.ws_url().into_client_request()?;
        if self.browser_headers {
            let headers = request.headers_mut();
            for (name, value) in BROWSER_HEADERS {
                headers.insert(*name, HeaderValue::from_static(value));
            }
        }
        Ok(request)
    }

    async fn tcp(&self, addr: SocketAddr) -> Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if !self.source_ips.is_empty() {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed) % self.source_ips.len();
            socket.bind(SocketAddr::new(self.source_ips[i], 0))?;
        }
        let stream = socket
            .connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

pub type Ws = WebSocketStream<TcpStream>;

/// What Chromium adds to a WebSocket upgrade from a page (the deflate offer is declined by
/// servers that do not compress, as pushi does).
const BROWSER_HEADERS: &[(&str, &str)] = &[
    ("origin", "https://app.example.com"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
         Chrome/156.0.0.0 Safari/537.36",
    ),
    ("accept-language", "en-US,en;q=0.9,pt;q=0.8"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("cache-control", "no-cache"),
    ("pragma", "no-cache"),
    (
        "cookie",
        "session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.1.1234567890.1700000000",
    ),
    (
        "sec-websocket-extensions",
        "permessage-deflate; client_max_window_bits",
    ),
];

/// Small buffers so ten thousand client sockets stay cheap: a 4 KiB read buffer (tungstenite's
/// default is 128 KiB, allocated up front) and no write buffering (frames go out at once).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Opens a WebSocket and waits for `pusher:connection_established`; returns the socket id.
pub async fn open(target: &Target) -> Result<(Ws, String)> {
    tokio::time::timeout(OP_TIMEOUT, async {
        let stream = target.tcp(target.ws_addr).await?;
        let request = target.ws_request()?;
        let (mut ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config()))
                .await
                .context("WebSocket handshake")?;
        loop {
            let text = next_text(&mut ws).await?;
            let msg: Value = serde_json::from_str(&text).context("non-JSON frame")?;
            match msg["event"].as_str() {
                Some("pusher:connection_established") => {
                    let data = decode_data(&msg["data"]);
                    let socket_id = data["socket_id"].as_str().ok_or_else(|| {
                        anyhow!("connection_established without socket_id: {text}")
                    })?;
                    return Ok((ws, socket_id.to_string()));
                }
                Some("pusher:error") => bail!("server refused the connection: {text}"),
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no connection_established within {OP_TIMEOUT:?}"))?
}

/// Next text frame; errors on close or end of stream.
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_string()),
            Some(Ok(Message::Close(frame))) => bail!("server closed the connection: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("WebSocket read"),
            None => bail!("connection ended"),
        }
    }
}

/// `data` of a server message: Pusher and Pushi send a JSON string, some servers an object.
fn decode_data(data: &Value) -> Value {
    match data {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Subscribes and waits for `pusher_internal:subscription_succeeded`. Private and presence
/// channels are signed with the app secret, as an auth endpoint would.
pub async fn subscribe(
    ws: &mut Ws,
    target: &Target,
    socket_id: &str,
    channel: &str,
    presence_user: Option<&str>,
) -> Result<()> {
    let mut data = json!({ "channel": channel });
    if channel.starts_with("presence-") {
        let user = presence_user.unwrap_or(socket_id);
        let channel_data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        data["auth"] = sign::channel_auth(
            &target.key,
            &target.secret,
            socket_id,
            channel,
            match target.dialect {
                Dialect::Pusher => Some(&channel_data),
                // Pushi does not sign channel_data and wants it as an object.
                Dialect::Pushi => None,
            },
        )
        .into();
        data["channel_data"] = match target.dialect {
            Dialect::Pusher => channel_data.into(),
            Dialect::Pushi => serde_json::from_str(&channel_data)?,
        };
    } else if channel.starts_with("private-") {
        data["auth"] =
            sign::channel_auth(&target.key, &target.secret, socket_id, channel, None).into();
    }
    let frame = json!({"event": "pusher:subscribe", "data": data}).to_string();
    tokio::time::timeout(OP_TIMEOUT, async {
        ws.send(Message::text(frame))
            .await
            .context("sending subscribe")?;
        loop {
            let text = next_text(ws).await?;
            let msg: Value = serde_json::from_str(&text).context("non-JSON frame")?;
            let event = msg["event"].as_str().unwrap_or_default();
            match event {
                "pusher_internal:subscription_succeeded" if msg["channel"] == channel => {
                    return Ok(());
                }
                "pusher:subscription_error" | "pusher:error" => {
                    bail!("subscribing {channel}: {text}")
                }
                "pusher:ping" => pong(ws).await?,
                _ => {}
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no subscription_succeeded for {channel} within {OP_TIMEOUT:?}"))?
}

pub async fn pong(ws: &mut Ws) -> Result<()> {
    ws.send(Message::text(r#"{"event":"pusher:pong","data":{}}"#))
        .await
        .context("sending pong")
}

/// Sends a close frame (1000) and waits briefly for the server's close frame or for it to drop
/// the connection; errors are of no interest here. The code matters: the original Pushi ignores
/// an empty close frame and keeps the connection open, while any payload makes it drop the TCP
/// connection at once.
pub async fn close(mut ws: Ws) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}

/// One keep-alive HTTP/1.1 connection, reopened after an error.
pub struct HttpConn {
    addr: SocketAddr,
    host_header: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl HttpConn {
    pub fn new(target: &Target) -> Self {
        HttpConn {
            addr: target.http_addr,
            host_header: format!("{}:{}", target.host, target.http_addr.port()),
            sender: None,
        }
    }

    async fn sender(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("connecting to {}", self.addr))?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// Sends one request and reads the whole answer.
    pub async fn request(
        &mut self,
        method: Method,
        uri: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let result = tokio::time::timeout(OP_TIMEOUT, async {
            let host = self.host_header.clone();
            let sender = self.sender().await?;
            sender.ready().await?;
            let request = Request::builder()
                .method(method)
                .uri(uri)
                .header(hyper::header::HOST, host)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        })
        .await
        .unwrap_or_else(|_| Err(anyhow!("HTTP request timed out after {OP_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// Publishes events over the HTTP API of either dialect, on one keep-alive connection.
pub struct Publisher {
    conn: HttpConn,
    dialect: Dialect,
    app_id: String,
    key: String,
    secret: String,
    /// Pushi dialect: the session token from `/login`.
    sid: Option<String>,
}

impl Publisher {
    /// Opens a publisher in `dialect` (which may differ from the target's subscribers').
    pub async fn connect(target: &Target, dialect: Dialect) -> Result<Self> {
        let mut publisher = Publisher {
            conn: HttpConn::new(target),
            dialect,
            app_id: target.app_id.clone(),
            key: target.key.clone(),
            secret: target.secret.clone(),
            sid: None,
        };
        if dialect == Dialect::Pushi {
            publisher.login().await?;
        }
        Ok(publisher)
    }

    async fn login(&mut self) -> Result<()> {
        let uri = format!(
            "/login?app_id={}&app_key={}&app_secret={}",
            self.app_id, self.key, self.secret
        );
        let (status, body) = self.conn.request(Method::GET, &uri, Bytes::new()).await?;
        if !status.is_success() {
            bail!(
                "GET /login answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        let answer: Value = serde_json::from_slice(&body).context("login answer is not JSON")?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| anyhow!("login answer has no token: {answer}"))?;
        self.sid = Some(token.to_string());
        Ok(())
    }

    /// Triggers event `bench` with `data` on `channel`; `persist` only matters for Pushi.
    pub async fn publish(&mut self, channel: &str, data: &str, persist: bool) -> Result<()> {
        let (uri, body) = match self.dialect {
            Dialect::Pusher => {
                let body = json!({"name": "bench", "channel": channel, "data": data}).to_string();
                let path = format!("/apps/{}/events", self.app_id);
                let query = sign::signed_query(
                    &self.key,
                    &self.secret,
                    "POST",
                    &path,
                    body.as_bytes(),
                    unix_now(),
                );
                (format!("{path}?{query}"), body)
            }
            Dialect::Pushi => {
                let sid = self.sid.as_deref().unwrap_or_default();
                let body =
                    json!({"channel": channel, "event": "bench", "data": data, "persist": persist})
                        .to_string();
                (format!("/events?sid={sid}"), body)
            }
        };
        let (status, answer) = self
            .conn
            .request(Method::POST, &uri, Bytes::from(body))
            .await?;
        if !status.is_success() {
            bail!(
                "publish answered {status}: {}",
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            );
        }
        Ok(())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
