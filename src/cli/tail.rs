//! `pushi tail`: subscribes to channels of a running server over WebSocket (Pusher protocol
//! 7) and prints one JSON line per event as it arrives.
//!
//! Private, presence and encrypted channels are signed here with the app's secret, as an
//! app's auth endpoint would sign them, so no auth endpoint is needed. Encrypted channels'
//! data is printed as it arrives (ciphertext): the master key never leaves the backend.

use std::collections::BTreeSet;

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::remote::{Credentials, Remote};
use crate::auth;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct Tail {
    #[command(flatten)]
    pub remote: Remote,
    /// A channel to subscribe to (repeat for several)
    #[arg(long = "channel", required = true)]
    pub channels: Vec<String>,
    /// The user id to join presence channels as
    #[arg(long, default_value = "pushi-tail")]
    pub user_id: String,
    /// The user_info (JSON) to join presence channels with
    #[arg(long, default_value = "{}")]
    pub user_info: String,
    /// Exit after this many events
    #[arg(long)]
    pub count: Option<u64>,
}

pub async fn run(config: Config, args: Tail) -> anyhow::Result<()> {
    let user_info: Value = serde_json::from_str(&args.user_info)
        .map_err(|e| anyhow::anyhow!("--user-info is not JSON: {e}"))?;
    let app = args.remote.credentials(&config).await?;
    let url = format!(
        "{}/app/{}?protocol=7&client=pushi-cli&version={}",
        args.remote.ws_base(&config),
        app.key,
        env!("CARGO_PKG_VERSION")
    );
    let parsed = url::Url::parse(&url).map_err(|e| anyhow::anyhow!("bad URL {url}: {e}"))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| anyhow::anyhow!("{url} has no host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| anyhow::anyhow!("{url} has no port"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let session = Session {
        app,
        channels: args.channels,
        user_id: args.user_id,
        user_info,
        count: args.count,
    };
    match parsed.scheme() {
        "ws" => {
            let (ws, _) = tokio_tungstenite::client_async(url.as_str(), tcp).await?;
            session.run(ws).await
        }
        "wss" => {
            use rustls_platform_verifier::ConfigVerifierExt;
            crate::install_crypto_provider();
            let tls = rustls::ClientConfig::with_platform_verifier()?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| anyhow::anyhow!("{host} is not a server name: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
                .connect(name, tcp)
                .await
                .map_err(|e| anyhow::anyhow!("TLS with {host}:{port} failed: {e}"))?;
            let (ws, _) = tokio_tungstenite::client_async(url.as_str(), stream).await?;
            session.run(ws).await
        }
        other => {
            anyhow::bail!("unsupported scheme {other:?}: use ws://, wss://, http:// or https://")
        }
    }
}

struct Session {
    app: Credentials,
    channels: Vec<String>,
    user_id: String,
    user_info: Value,
    count: Option<u64>,
}

impl Session {
    async fn run<S>(self, mut ws: WebSocketStream<S>) -> anyhow::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut waiting: BTreeSet<String> = self.channels.iter().cloned().collect();
        let mut printed = 0u64;
        while let Some(message) = ws.next().await {
            let text = match message? {
                Message::Text(text) => text,
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    anyhow::bail!("the server closed the connection: {code} {reason}");
                }
                _ => continue,
            };
            let frame: Value = serde_json::from_str(text.as_str())
                .map_err(|e| anyhow::anyhow!("the server sent something that is not JSON: {e}"))?;
            let event = frame["event"].as_str().unwrap_or_default();
            let channel = frame["channel"].as_str();
            match (event, channel) {
                ("pusher:connection_established", _) => {
                    let socket_id = data_of(&frame)["socket_id"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            anyhow::anyhow!("connection_established has no socket_id")
                        })?;
                    for channel in &self.channels {
                        let subscribe = self.subscription(&socket_id, channel);
                        ws.send(Message::text(subscribe.to_string())).await?;
                    }
                }
                ("pusher:ping", _) => {
                    let pong = json!({"event": "pusher:pong", "data": {}});
                    ws.send(Message::text(pong.to_string())).await?;
                }
                ("pusher:error", _) => {
                    eprintln!("pushi tail: server error: {}", data_of(&frame));
                }
                ("pusher_internal:subscription_succeeded", Some(channel)) => {
                    waiting.remove(channel);
                    eprintln!("pushi tail: subscribed to {channel}");
                }
                ("pusher:subscription_error", Some(channel)) => {
                    anyhow::bail!("subscribing to {channel} was refused: {}", data_of(&frame));
                }
                ("pusher:subscription_count", _) => {}
                (_, Some(channel)) => {
                    let mut line =
                        json!({"channel": channel, "event": event, "data": data_of(&frame)});
                    if let Some(user_id) = frame.get("user_id") {
                        line["user_id"] = user_id.clone();
                    }
                    println!("{line}");
                    printed += 1;
                    if self.count.is_some_and(|n| printed >= n) {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        anyhow::bail!("the connection ended")
    }

    /// A `pusher:subscribe` for `channel`, signed if the channel needs it.
    fn subscription(&self, socket_id: &str, channel: &str) -> Value {
        let mut data = json!({"channel": channel});
        let needs_auth = ["private-", "presence-"]
            .iter()
            .any(|p| channel.starts_with(p));
        if !needs_auth {
            return json!({"event": "pusher:subscribe", "data": data});
        }
        let channel_data = channel
            .starts_with("presence-")
            .then(|| json!({"user_id": self.user_id, "user_info": self.user_info}).to_string());
        let message = auth::channel_auth_message(socket_id, channel, channel_data.as_deref());
        data["auth"] = auth::auth_string(&self.app.key, &self.app.secret, &message).into();
        if let Some(channel_data) = channel_data {
            data["channel_data"] = channel_data.into();
        }
        json!({"event": "pusher:subscribe", "data": data})
    }
}

/// A frame's `data`, parsed when it is a JSON string holding JSON (Pusher's double encoding).
fn data_of(frame: &Value) -> Value {
    match &frame["data"] {
        Value::String(text) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
        other => other.clone(),
    }
}
