//! One WebSocket connection: its task, its own state, and its cleanup.
//!
//! The task owns the socket and does three things in one `select!`: write frames the hub
//! queued for it (in batches, one flush per burst), read and dispatch client messages, and
//! watch the clock. Everything the connection sends — replies included — goes through its
//! queue, so frames reach the client in the order they were decided.
//!
//! The clock, one timer per connection, does two jobs:
//!
//! - Keep-alive, Pusher protocol only: ping a silent client (`pusher:ping`), close one that
//!   does not answer with 4201. Pushi's clients cannot parse a ping of any kind (pushi.js
//!   throws on `pusher:ping`, the original Python client hands every frame, ping frames
//!   included, to `json.loads`), so Pushi sockets are never pinged nor closed for silence:
//!   the listener's TCP keep-alive finds dead peers, the write deadline finds deaf ones.
//! - The write deadline, both dialects: a write normally completes at once; one that has to
//!   wait for the client moves the timer to `write_timeout` from now, and a client that has
//!   not taken its frames by then is closed with 4100. A close asked for meanwhile (queue
//!   overflow, shutdown) ends the wait too.
//!
//! A message that breaks WebSocket framing closes the connection with RFC 6455's code
//! (1002 protocol error, 1007 text that is not UTF-8, 1009 too big), not a bare TCP close.
//!
//! [`Connection`] leaves the hub in its `Drop`, so presence and subscriptions are cleaned up
//! however the task ends: client close, error, server shutdown or panic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use futures_util::{FutureExt, SinkExt};

use crate::app::App;
use crate::hub::socket::Work;
use crate::hub::{AppState, Hub, SignedIn, SocketHandle, SocketReceiver};
use crate::protocol::frames::{self, Frame};
use crate::protocol::{ChannelName, Dialect, codes};

/// Most frames written before one flush; bounds how long reading can be starved by a burst.
const MAX_BATCH: usize = 64;

pub(super) struct Connection {
    pub hub: Arc<Hub>,
    pub state: Arc<AppState>,
    pub handle: SocketHandle,
    /// `handle.id()` as text, as clients see and sign it.
    pub socket_id: String,
    pub dialect: Dialect,
    pub channels: HashSet<ChannelName>,
    /// Pushi: each joined `personal-{user}` channel and the channels it expanded to.
    pub personal: HashMap<ChannelName, Vec<ChannelName>>,
    pub signed_in: Option<SignedIn>,
    pub client_events: RateWindow,
}

impl Connection {
    pub fn app(&self) -> Arc<App> {
        self.state.app()
    }

    /// Queues a frame for this client.
    pub fn send(&self, frame: Frame) {
        self.handle.send(frame);
    }

    /// Replies `pusher:error`; the connection stays open.
    pub fn send_error(&self, code: Option<u16>, message: &str) {
        metrics::counter!(crate::metrics::CLIENT_ERRORS).increment(1);
        if let Some(suppressed) = super::CLIENT_ERROR_LOG.ready() {
            tracing::debug!(
                socket_id = %self.socket_id,
                ?code,
                message = %crate::logs::clip(message),
                suppressed,
                "client error"
            );
        }
        self.send(match self.dialect {
            Dialect::Pusher => frames::error(code, message),
            // pushi.js routes every frame by its `channel` key and throws without one.
            Dialect::Pushi => frames::error_on_channel(code, message, ""),
        });
    }

    /// Whether this socket may join `channel` without going past the app's
    /// `max_subscriptions_per_socket`; replies `pusher:error` 4303 if not. A channel the socket
    /// already joined is always allowed (subscribing again only repeats the reply).
    pub fn within_subscription_limit(&self, channel: &ChannelName) -> bool {
        let limit = self.app().settings.max_subscriptions_per_socket;
        if self.channels.contains(channel) || self.channels.len() < limit {
            return true;
        }
        self.refuse_over_limit(channel, limit);
        false
    }

    /// Counts one client event against the app's `client_event_rate`, the same in both
    /// dialects; replies 4301 and returns false when over it.
    pub fn client_event_allowed(&mut self) -> bool {
        let rate = self.app().settings.client_event_rate;
        if self.client_events.allow(rate) {
            return true;
        }
        self.send_error(
            Some(codes::CLIENT_EVENT_RATE_LIMIT),
            &format!("client event rejected: more than {rate} per second"),
        );
        false
    }

    /// Replies `pusher:error` 4303: joining `channel` would pass the subscription cap.
    pub fn refuse_over_limit(&self, channel: &ChannelName, limit: usize) {
        self.send_error(
            Some(codes::SUBSCRIPTION_LIMIT),
            &format!(
                "subscription to {channel:?} refused: a connection may be subscribed to at most {limit} channels"
            ),
        );
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let channels = std::mem::take(&mut self.channels);
        self.hub
            .disconnect(&self.state, &self.handle, channels, self.signed_in.as_ref());
        tracing::info!(
            app_id = %self.state.app().id,
            socket_id = %self.socket_id,
            "connection closed"
        );
    }
}

/// A fixed one-second window counter for client events.
pub(super) struct RateWindow {
    started: Instant,
    count: u32,
}

impl RateWindow {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            count: 0,
        }
    }

    /// Counts one event; false if it exceeds `per_second`.
    pub fn allow(&mut self, per_second: u32) -> bool {
        if self.started.elapsed().as_secs() >= 1 {
            self.started = Instant::now();
            self.count = 0;
        }
        self.count += 1;
        self.count <= per_second
    }
}

/// The connection task. Written as a function returning an `async move` block rather than an
/// `async fn`: an `async fn` moves its arguments into fresh locals, so its state machine would
/// hold the 368-byte WebSocket twice for the connection's whole life. Every idle connection
/// pays for this future's size, so rare paths (refusal, close, handlers) are boxed.
#[allow(clippy::manual_async_fn)] // deliberate: see above
pub(super) fn run(
    hub: Arc<Hub>,
    app: Arc<App>,
    mut socket: WebSocket,
    dialect: Dialect,
) -> impl Future<Output = ()> + Send {
    async move {
        let state = hub.state(&app);
        let (handle, queue) = match hub.connect(&state) {
            Ok(pair) => pair,
            Err(refusal) => {
                if let Some(suppressed) = super::REFUSED_LOG.ready() {
                    tracing::info!(app_id = %app.id, code = refusal.code(), suppressed, "websocket refused: {}", refusal.message());
                }
                Box::pin(super::refuse(
                    socket,
                    refusal.code(),
                    refusal.message().to_owned(),
                ))
                .await;
                return;
            }
        };
        let mut conn = Connection {
            socket_id: handle.id().to_string(),
            hub: hub.clone(),
            state,
            handle: handle.clone(),
            dialect,
            channels: HashSet::new(),
            personal: HashMap::new(),
            signed_in: None,
            client_events: RateWindow::new(),
        };
        tracing::info!(app_id = %app.id, socket_id = %conn.socket_id, ?dialect, "connection opened");
        let activity_timeout = hub.config.activity_timeout;
        conn.send(frames::connection_established(
            &conn.socket_id,
            activity_timeout.as_secs(),
        ));

        // Pushi sockets get no keep-alive pings (see the module's doc).
        let keep_alive = dialect == Dialect::Pusher;
        let mut last_heard = Instant::now();
        let mut pinged_at: Option<Instant> = None;
        // One timer for the connection's life, moved only when its deadline changes. It is
        // registered with the runtime on its first poll, so a Pushi socket that never has to
        // wait for a write never registers it.
        let mut armed = last_heard + activity_timeout;
        let timer = tokio::time::sleep_until(armed.into());
        tokio::pin!(timer);
        let close_code = loop {
            if keep_alive {
                let deadline = match pinged_at {
                    Some(at) => at + hub.config.pong_timeout,
                    None => last_heard + activity_timeout,
                };
                if deadline != armed {
                    armed = deadline;
                    timer.as_mut().reset(deadline.into());
                }
            }
            tokio::select! {
                biased;
                work = queue.work() => match work {
                    Work::Close(code) => break Some(code),
                    // A write normally completes at once; only one that has to wait for the
                    // client takes the (boxed, rarely used) path with the deadline.
                    Work::Frames => match write_batch(&mut socket, &queue).now_or_never() {
                        Some(Ok(())) => {}
                        Some(Err(_)) => break None,
                        None => {
                            armed = Instant::now() + hub.config.write_timeout;
                            timer.as_mut().reset(armed.into());
                            let waited = Box::pin(wait_for_write(&mut socket, &queue, timer.as_mut()));
                            match waited.await {
                                Stalled::Written => {}
                                Stalled::Failed => break None,
                                Stalled::TimedOut => break Some(codes::OVER_CAPACITY),
                                Stalled::CloseRequested(code) => break Some(code),
                            }
                        }
                    },
                },
                message = socket.recv() => {
                    let message = match message {
                        Some(Ok(message)) => message,
                        Some(Err(e)) => break violation_code(&e),
                        None => break None,
                    };
                    last_heard = Instant::now();
                    pinged_at = None;
                    match message {
                        // Boxed: the handlers' futures (store calls included) are large, and inline
                        // they would make every idle connection's task that large.
                        Message::Text(text) => Box::pin(conn.handle_text(text)).await,
                        Message::Binary(_) => conn.send_error(
                            None,
                            &crate::protocol::InboundError::Binary.to_string(),
                        ),
                        // Ping frames are answered by the WebSocket layer; both count as activity.
                        Message::Ping(_) | Message::Pong(_) => {}
                        Message::Close(_) => break None,
                    }
                }
                _ = &mut timer, if keep_alive => {
                    if pinged_at.is_some() {
                        break Some(codes::PONG_NOT_RECEIVED);
                    }
                    conn.send(frames::ping());
                    pinged_at = Some(Instant::now());
                }
            }
        };
        if let Some(code) = close_code {
            let reason = match code {
                codes::GOING_AWAY => "server shutting down; reconnect",
                codes::PONG_NOT_RECEIVED => "pong not received in time",
                codes::OVER_CAPACITY => "client too slow: it did not take its frames in time",
                codes::UNAUTHORIZED => "connection terminated",
                codes::PROTOCOL_ERROR => "WebSocket protocol error",
                codes::INVALID_PAYLOAD => "text message is not valid UTF-8",
                codes::MESSAGE_TOO_BIG => "message too big",
                _ => "closed by server",
            };
            tracing::info!(socket_id = %conn.socket_id, code, reason, "closing connection");
            Box::pin(super::close(&mut socket, code, reason)).await;
        }
        drop(conn);
    }
}

impl Connection {
    /// One text message from the client, in the connection's dialect. Takes the text by
    /// value so the connection task keeps none of it while the handler runs.
    async fn handle_text(&mut self, text: axum::extract::ws::Utf8Bytes) {
        match self.dialect {
            Dialect::Pusher => self.handle_pusher(&text).await,
            Dialect::Pushi => self.handle_pushi(&text).await,
        }
    }
}

/// How a write that had to wait for the client ended.
enum Stalled {
    Written,
    Failed,
    /// The client did not take its frames before the write deadline.
    TimedOut,
    /// Someone asked the socket to close meanwhile (its queue overflowed, shutdown, …).
    CloseRequested(u16),
}

/// Finishes a write that could not complete at once, until `deadline` fires or a close is
/// asked for. Restarting the batch is safe: a frame leaves the queue only once the socket
/// has taken it.
async fn wait_for_write(
    socket: &mut WebSocket,
    queue: &SocketReceiver,
    deadline: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Stalled {
    tokio::select! {
        biased;
        code = queue.close_requested() => Stalled::CloseRequested(code),
        written = write_batch(socket, queue) => match written {
            Ok(()) => Stalled::Written,
            Err(_) => Stalled::Failed,
        },
        _ = deadline => Stalled::TimedOut,
    }
}

/// The close code RFC 6455 prescribes for a message that broke the protocol, or `None` when
/// the connection simply ended (reset, I/O error) and no close frame can be sent.
fn violation_code(error: &axum::Error) -> Option<u16> {
    use tungstenite::error::{Error, ProtocolError};
    let error = std::error::Error::source(error)?.downcast_ref::<Error>()?;
    match error {
        Error::Utf8(_) => Some(codes::INVALID_PAYLOAD),
        Error::Capacity(_) => Some(codes::MESSAGE_TOO_BIG),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(_) => Some(codes::PROTOCOL_ERROR),
        _ => None,
    }
}

/// Writes what is queued (up to [`MAX_BATCH`] frames), then flushes once.
///
/// Written against the `Sink` poll methods rather than `feed(..).await`, so the future holds
/// no frame or inner future of its own: it is part of every connection task's state.
async fn write_batch(socket: &mut WebSocket, queue: &SocketReceiver) -> Result<(), axum::Error> {
    let mut written = 0;
    std::future::poll_fn(|cx| {
        // A frame is popped only once the socket can take it, so none is dropped if the
        // write side is full.
        while written < MAX_BATCH {
            std::task::ready!(socket.poll_ready_unpin(cx))?;
            let Some(frame) = queue.pop() else { break };
            socket.start_send_unpin(Message::Text(frame))?;
            written += 1;
        }
        socket.poll_flush_unpin(cx)
    })
    .await
}
