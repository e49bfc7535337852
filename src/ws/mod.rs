//! WebSocket endpoints: which dialect a URL asks for, and turning an upgrade into a
//! connection task.
//!
//! `/app/{key}?protocol=7` (optionally behind a path prefix) speaks Pusher protocol 7; any
//! other path whose last segment is an app key (`/{key}`, Pushi's form) speaks Pushi. Every
//! refusal — unknown app, disabled app, bad path or protocol — still completes the upgrade,
//! sends `pusher:error` and closes with the protocol's code, because a WebSocket client can
//! only see a close code, not an HTTP status.
//!
//! Anyone can ask for an upgrade, as often as they like, with any path: refusals are logged
//! with the client's strings clipped and at most once per second per kind of refusal
//! (`crate::logs`), so the log cannot be used to fill the disk.

mod connection;
mod pusher;
mod pushi;

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::Uri;
use axum::response::Response;

use crate::hub::Hub;
use crate::listener::AdmissionGuard;
use crate::logs::{Throttle, clip};
use crate::protocol::{Dialect, SUPPORTED_PROTOCOLS, codes, frames};

/// Largest message the WebSocket layer accepts at all. Messages above an app's payload limit
/// but below this get a `pusher:error` and the connection lives on; above it the frame cannot
/// be buffered safely and the connection closes with 1009.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Read buffer per connection: small, because idle connections are the common case and
/// tungstenite zero-fills the whole buffer before each read (so all of it is resident). Client
/// messages are small; a larger one just takes several reads.
const READ_BUFFER_BYTES: usize = 256;

/// Outgoing frames are coalesced up to this size before a write, so a burst of queued frames
/// costs one syscall rather than one each.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// How long the server waits to send its close frame and hear the client's: a client that
/// does not read must not hold its connection open through the close either.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often each kind of repeatable rejection may be logged.
const LOG_PERIOD: Duration = Duration::from_secs(1);

/// Upgrades to a path that is no WebSocket endpoint, or without a usable protocol version.
static BAD_URL_LOG: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));
/// Upgrades naming an app key that does not exist.
static UNKNOWN_KEY_LOG: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));
/// Upgrades the hub refused (app disabled, over its connection quota).
static REFUSED_LOG: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));
/// `pusher:error` replies to client messages (debug level).
static CLIENT_ERROR_LOG: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));

/// What the URL asked for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Connect { key: String, dialect: Dialect },
    Refused { code: u16, message: String },
}

fn parse_target(uri: &Uri) -> Target {
    let path = uri.path().trim_end_matches('/');
    let mut segments = path.rsplit('/');
    let key = segments.next().unwrap_or_default();
    if key.is_empty() || key == "app" {
        return Target::Refused {
            code: codes::PATH_NOT_FOUND,
            message: format!(
                "no WebSocket endpoint at {:?}; connect to /app/{{key}}?protocol=7 (Pusher) or /{{key}} (Pushi)",
                clip(uri.path())
            ),
        };
    }
    if segments.next() != Some("app") {
        return Target::Connect {
            key: key.to_owned(),
            dialect: Dialect::Pushi,
        };
    }
    let protocol = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "protocol")
            .map(|(_, v)| v.into_owned())
    });
    match protocol.as_deref().map(str::parse::<u32>) {
        None => Target::Refused {
            code: codes::NO_PROTOCOL,
            message: "no protocol version given; add ?protocol=7".into(),
        },
        Some(Err(_)) => Target::Refused {
            code: codes::BAD_VERSION_STRING,
            message: format!(
                "protocol version {:?} is not a number",
                clip(&protocol.unwrap_or_default())
            ),
        },
        Some(Ok(v)) if !SUPPORTED_PROTOCOLS.contains(&v) => Target::Refused {
            code: codes::UNSUPPORTED_PROTOCOL,
            message: format!(
                "protocol version {v} is not supported; use {}..={}",
                SUPPORTED_PROTOCOLS.start(),
                SUPPORTED_PROTOCOLS.end()
            ),
        },
        Some(Ok(_)) => Target::Connect {
            key: key.to_owned(),
            dialect: Dialect::Pusher,
        },
    }
}

/// Accepts a WebSocket upgrade on any path and runs the connection (or its refusal).
pub async fn upgrade(
    hub: Arc<Hub>,
    ws: WebSocketUpgrade,
    uri: Uri,
    slot: Option<Box<AdmissionGuard>>,
) -> Response {
    let ws = ws
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES);
    let (key, dialect) = match parse_target(&uri) {
        Target::Connect { key, dialect } => (key, dialect),
        Target::Refused { code, message } => {
            if let Some(suppressed) = BAD_URL_LOG.ready() {
                tracing::info!(path = %clip(uri.path()), code, %message, suppressed, "websocket refused");
            }
            return ws.on_upgrade(move |socket| refuse(socket, code, message));
        }
    };
    let app = match hub.apps.by_key(&key).await {
        Ok(Some(app)) => app,
        Ok(None) => {
            let key = clip(&key);
            if let Some(suppressed) = UNKNOWN_KEY_LOG.ready() {
                tracing::info!(app_key = %key, suppressed, "websocket refused: unknown app key");
            }
            let message = format!("no app with key {key:?}");
            return ws.on_upgrade(move |socket| refuse(socket, codes::APP_NOT_FOUND, message));
        }
        Err(e) => {
            tracing::error!(error = %e, "app lookup failed");
            let message = "server error while looking up the app; try again".to_owned();
            return ws.on_upgrade(move |socket| refuse(socket, codes::GOING_AWAY, message));
        }
    };
    match slot {
        None => ws.on_upgrade(move |socket| connection::run(hub, app, socket, dialect)),
        // A client behind a trusted proxy holds its per-address slot as long as its socket.
        Some(slot) => ws.on_upgrade(move |socket| async move {
            connection::run(hub, app, socket, dialect).await;
            drop(slot);
        }),
    }
}

/// Sends `pusher:error` with `code`, then closes with the same code.
async fn refuse(mut socket: WebSocket, code: u16, message: String) {
    let _ = socket
        .send(Message::Text(frames::error(Some(code), &message)))
        .await;
    close(&mut socket, code, &message).await;
}

/// Sends a close frame and waits briefly for the client's, so the code reaches it intact.
/// Bounded by [`CLOSE_GRACE`] as a whole, sending included: the client may not be reading.
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    // Close reasons are limited to 123 bytes by RFC 6455.
    let mut reason = reason.to_owned();
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        if socket.send(Message::Close(Some(frame))).await.is_ok() {
            while let Some(Ok(msg)) = socket.recv().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(s: &str) -> Target {
        parse_target(&s.parse::<Uri>().unwrap())
    }

    #[test]
    fn pusher_paths() {
        let pusher = |key: &str| Target::Connect {
            key: key.into(),
            dialect: Dialect::Pusher,
        };
        assert_eq!(target("/app/abc?protocol=7&client=js"), pusher("abc"));
        assert_eq!(target("/prefix/app/abc?protocol=7"), pusher("abc"));
        assert!(matches!(
            target("/app/abc"),
            Target::Refused { code: 4008, .. }
        ));
        assert!(matches!(
            target("/app/abc?protocol=x"),
            Target::Refused { code: 4006, .. }
        ));
        assert!(matches!(
            target("/app/abc?protocol=3"),
            Target::Refused { code: 4007, .. }
        ));
        assert!(matches!(
            target("/app/?protocol=7"),
            Target::Refused { code: 4005, .. }
        ));
        assert!(matches!(target("/"), Target::Refused { code: 4005, .. }));
    }

    #[test]
    fn pushi_paths() {
        let pushi = |key: &str| Target::Connect {
            key: key.into(),
            dialect: Dialect::Pushi,
        };
        assert_eq!(target("/abc"), pushi("abc"));
        assert_eq!(target("/any/prefix/abc?x=1"), pushi("abc"));
    }
}
