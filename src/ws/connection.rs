//! One WebSocket connection: its task, its own state, and its cleanup.
//!
//! The task owns the socket and does three things in one `select!`: write frames the hub
//! queued for it (in batches, one flush per burst), read and dispatch client messages, and
//! watch the clock (ping a silent client, close one that does not answer). Everything the
//! connection sends — replies included — goes through its queue, so frames reach the client
//! in the order they were decided.
//!
//! [`Connection`] leaves the hub in its `Drop`, so presence and subscriptions are cleaned up
//! however the task ends: client close, error, server shutdown or panic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;

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
        tracing::debug!(socket_id = %self.socket_id, ?code, %message, "client error");
        self.send(match self.dialect {
            Dialect::Pusher => frames::error(code, message),
            // pushi.js routes every frame by its `channel` key and throws without one.
            Dialect::Pushi => frames::error_on_channel(code, message, ""),
        });
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
                tracing::info!(app_id = %app.id, code = refusal.code(), "websocket refused: {}", refusal.message());
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

        let mut last_heard = Instant::now();
        let mut pinged_at: Option<Instant> = None;
        // One timer for the connection's life, moved only when its deadline changes.
        let mut armed = last_heard + activity_timeout;
        let timer = tokio::time::sleep_until(armed.into());
        tokio::pin!(timer);
        let close_code = loop {
            let deadline = match pinged_at {
                Some(at) => at + hub.config.pong_timeout,
                None => last_heard + activity_timeout,
            };
            if deadline != armed {
                armed = deadline;
                timer.as_mut().reset(deadline.into());
            }
            tokio::select! {
                biased;
                work = queue.work() => match work {
                    Work::Close(code) => break Some(code),
                    Work::Frames => {
                        if write_batch(&mut socket, &queue).await.is_err() {
                            break None;
                        }
                    }
                },
                message = socket.recv() => {
                    let Some(Ok(message)) = message else { break None };
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
                _ = &mut timer => {
                    if pinged_at.is_some() {
                        break Some(codes::PONG_NOT_RECEIVED);
                    }
                    // Pushi's clients do not know `pusher:ping` (pushi.js throws on it); a
                    // WebSocket ping frame is answered by every browser and client library.
                    match dialect {
                        Dialect::Pusher => conn.send(frames::ping()),
                        Dialect::Pushi => {
                            if socket.send(Message::Ping(Default::default())).await.is_err() {
                                break None;
                            }
                        }
                    }
                    pinged_at = Some(Instant::now());
                }
            }
        };
        if let Some(code) = close_code {
            let reason = match code {
                codes::GOING_AWAY => "server shutting down; reconnect",
                codes::PONG_NOT_RECEIVED => "pong not received in time",
                codes::OVER_CAPACITY => "client too slow: outbound queue overflowed",
                codes::UNAUTHORIZED => "connection terminated",
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
