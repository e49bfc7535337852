//! The debug tap: what happens inside one app on this node, as it happens, for whoever is
//! watching (the dashboard's debug console and live view).
//!
//! Each [`AppState`](super::AppState) has one [`DebugTap`]. The publish path and the
//! connection lifecycle call [`DebugTap::emit`] with a closure; while nobody listens that is
//! one relaxed atomic load and the closure never runs, so an app nobody watches pays nothing.
//! Listeners share a small bounded broadcast: a listener that falls behind loses the oldest
//! events (and is told how many), and a publish never waits for it.
//!
//! The tap shows this node's view: its own sockets' lifecycle, the events published here and
//! the events other nodes of a cluster delivered to it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;

use super::publish::{EventData, Publish};
use super::socket::SocketId;
use crate::protocol::ChannelName;

/// Events a listener may fall behind by before it starts losing them.
const CAPACITY: usize = 256;

/// Published data longer than this is cut in the debug event (never in the publish).
const MAX_DATA_BYTES: usize = 16 * 1024;

/// One thing that happened in an app, as the debug console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct DebugEvent {
    /// Unix milliseconds.
    pub time_ms: i64,
    #[serde(flatten)]
    pub kind: DebugEventKind,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DebugEventKind {
    Connected {
        socket_id: String,
    },
    Disconnected {
        socket_id: String,
    },
    Subscribed {
        socket_id: String,
        channel: String,
        /// The presence user id the socket joined as.
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    Unsubscribed {
        socket_id: String,
        channel: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
    },
    Published {
        channels: Vec<String>,
        event: String,
        /// The data as Pushi clients get it: a string's contents, other JSON as its text.
        data: String,
        /// Whether `data` was cut at [`MAX_DATA_BYTES`].
        truncated: bool,
        /// The socket that sent it, for a client event.
        #[serde(skip_serializing_if = "Option::is_none")]
        socket_id: Option<String>,
        /// The socket excluded from delivery (a trigger's `socket_id`).
        #[serde(skip_serializing_if = "Option::is_none")]
        exclude: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<String>,
        /// Frames queued on this node's sockets.
        frames: usize,
        /// Published on another node of the cluster and delivered here.
        remote: bool,
    },
}

impl DebugEventKind {
    pub fn connected(socket: SocketId) -> Self {
        Self::Connected {
            socket_id: socket.to_string(),
        }
    }

    pub fn disconnected(socket: SocketId) -> Self {
        Self::Disconnected {
            socket_id: socket.to_string(),
        }
    }

    pub fn subscribed(socket: SocketId, channel: &ChannelName, user_id: Option<&str>) -> Self {
        Self::Subscribed {
            socket_id: socket.to_string(),
            channel: channel.to_string(),
            user_id: user_id.map(str::to_owned),
        }
    }

    pub fn unsubscribed(socket: SocketId, channel: &ChannelName, user_id: Option<&str>) -> Self {
        Self::Unsubscribed {
            socket_id: socket.to_string(),
            channel: channel.to_string(),
            user_id: user_id.map(str::to_owned),
        }
    }

    pub fn published(
        publish: &Publish<'_>,
        data: &EventData<'_>,
        frames: usize,
        remote: bool,
    ) -> Self {
        let text = data.text();
        let cut = floor_char_boundary(text, MAX_DATA_BYTES);
        Self::Published {
            channels: publish.channels.iter().map(|c| c.to_string()).collect(),
            event: publish.event.to_owned(),
            data: text[..cut].to_owned(),
            truncated: cut < text.len(),
            socket_id: publish.sender.map(|s| s.to_string()),
            exclude: publish.exclude.map(|s| s.to_string()),
            user_id: publish.user_id.map(str::to_owned),
            frames,
            remote,
        }
    }
}

/// The largest index not above `max` that falls on a character boundary of `text`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    if text.len() <= max {
        return text.len();
    }
    (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

/// One app's debug tap on this node.
#[derive(Default)]
pub struct DebugTap {
    /// Created by the first listener; never while nobody ever listened.
    sender: OnceLock<broadcast::Sender<Arc<DebugEvent>>>,
    /// Listeners alive now. Counted here rather than asked of the broadcast, whose count
    /// takes a lock: `emit` runs on every publish and must cost one atomic load.
    listeners: Arc<AtomicUsize>,
}

impl DebugTap {
    /// Sends the event `build` makes to every listener, if there is any; otherwise does not
    /// call `build`. Never blocks.
    pub fn emit(&self, build: impl FnOnce() -> DebugEventKind) {
        if self.listeners.load(Ordering::Relaxed) == 0 {
            return;
        }
        if let Some(sender) = self.sender.get() {
            let event = DebugEvent {
                time_ms: crate::clock::now_millis(),
                kind: build(),
            };
            // Err only when the last listener left meanwhile: nobody to tell.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// Starts listening: every event emitted from now on, until the listener is dropped.
    pub fn listen(&self) -> DebugListener {
        let sender = self.sender.get_or_init(|| broadcast::channel(CAPACITY).0);
        let receiver = sender.subscribe();
        self.listeners.fetch_add(1, Ordering::Relaxed);
        DebugListener {
            receiver,
            listeners: self.listeners.clone(),
        }
    }
}

/// What a listener receives next.
#[derive(Debug)]
pub enum Heard {
    Event(Arc<DebugEvent>),
    /// The listener fell behind and this many events were dropped for it.
    Missed(u64),
}

/// A listener of one app's [`DebugTap`]; stops counting as one when dropped.
pub struct DebugListener {
    receiver: broadcast::Receiver<Arc<DebugEvent>>,
    listeners: Arc<AtomicUsize>,
}

impl DebugListener {
    /// The next event, or how many were missed. Waits for one; never ends while the app's
    /// state exists (which is as long as the hub).
    pub async fn recv(&mut self) -> Heard {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Heard::Event(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => return Heard::Missed(missed),
                // The sender lives in the app's state, which outlives every listener.
                Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    }
}

impl Drop for DebugListener {
    fn drop(&mut self) {
        self.listeners.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_built_while_nobody_listens() {
        let tap = DebugTap::default();
        tap.emit(|| unreachable!("built with no listener"));
        let listener = tap.listen();
        drop(listener);
        tap.emit(|| unreachable!("built after the last listener left"));
    }

    #[tokio::test]
    async fn listeners_hear_events_and_laggards_lose_the_oldest() {
        let tap = DebugTap::default();
        let mut quick = tap.listen();
        let mut slow = tap.listen();
        let socket = SocketId::parse("1.2").expect("socket id");
        tap.emit(|| DebugEventKind::connected(socket));
        match quick.recv().await {
            Heard::Event(e) => assert!(matches!(e.kind, DebugEventKind::Connected { .. })),
            Heard::Missed(n) => panic!("missed {n}"),
        }
        for _ in 0..CAPACITY + 10 {
            tap.emit(|| DebugEventKind::disconnected(socket));
        }
        match slow.recv().await {
            Heard::Missed(n) => assert_eq!(n, 11),
            Heard::Event(e) => panic!("expected a gap, got {e:?}"),
        }
    }

    #[test]
    fn long_data_is_cut_on_a_character_boundary() {
        let text = "é".repeat(MAX_DATA_BYTES);
        let cut = floor_char_boundary(&text, MAX_DATA_BYTES);
        assert!(cut <= MAX_DATA_BYTES && text.is_char_boundary(cut));
        assert_eq!(floor_char_boundary("short", MAX_DATA_BYTES), 5);
    }
}
