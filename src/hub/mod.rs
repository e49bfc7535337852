//! The hub: every app's live state on this node, and the one path every event takes.
//!
//! Sockets, channels, presence members, signed-in users and cached events live here, sharded
//! per app and per channel (`DashMap`), never behind one global lock. All operations but the
//! publish are synchronous: they only touch memory and queue frames, so they can run from a
//! connection task, an HTTP handler or a `Drop` guard alike.
//!
//! One file per concern:
//!
//! - here: the [`Hub`] itself — apps' states, connecting and disconnecting sockets;
//! - [`publish`]: [`Hub::publish`], the one way an event enters (validate, store, record
//!   offline deliveries, fan out, hand to the cluster, report client events);
//! - [`fan_out`]: putting one event on this node's sockets, for local and remote publishes;
//! - [`app_state`]: one app's [`AppState`], subscribing and unsubscribing, subscription counts;
//! - [`users`]: sign-in, watchlists, `terminate_connections`;
//! - [`queries`]: what the HTTP API and subscription replies ask (stats, presence members);
//! - [`cache`]: cache channels' last events;
//! - [`local_node`]: what the cluster calls back into (`cluster::LocalNode`);
//! - [`debug`]: the debug tap the dashboard watches (zero cost while nobody does);
//! - [`channel`], [`socket`]: one channel's subscribers, one socket's queue.

pub mod app_state;
pub mod cache;
pub mod channel;
pub mod debug;
pub mod fan_out;
pub mod local_node;
pub mod publish;
pub mod queries;
pub mod socket;
pub mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;

use crate::app::App;
use crate::cluster::ClusterView;
use crate::notify::Notifier;
use crate::notify::pusher_webhooks::HookSender;
use crate::protocol::{ChannelName, codes};
use crate::registry::AppRegistry;

pub use app_state::{AppState, SubscribeOutcome, SubscribeRefusal};
pub use cache::CachedEvent;
pub use publish::{EventData, Publish, PublishError};
pub use queries::{ChannelStats, Members};
pub use socket::{SocketHandle, SocketId, SocketReceiver};
pub use users::SignedIn;

/// Tunables that are the same for every app.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Seconds of client silence before the server pings a Pusher-protocol socket (also
    /// announced to clients of both dialects).
    pub activity_timeout: Duration,
    /// How long a pinged Pusher-protocol client has to answer before it is closed with 4201.
    pub pong_timeout: Duration,
    /// How long one write to a socket may wait for the client to take its frames. A socket
    /// that stops reading is closed with 4100 after this, so it leaves its channels (and
    /// frees what it holds) within a bounded time.
    pub write_timeout: Duration,
    /// Frames a socket may have queued before it counts as too slow and is closed.
    pub queue_len: usize,
    /// How long a cache channel keeps its last event.
    pub cache_ttl: Duration,
    /// Accept Pushi's older presence signature (no `channel_data`) for every app, as each
    /// app's `legacy_auth` setting does for that app: for a migration from Pushi.
    pub legacy_auth: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            queue_len: 1024,
            cache_ttl: Duration::from_secs(30 * 60),
            legacy_auth: false,
        }
    }
}

pub struct Hub {
    pub apps: Arc<AppRegistry>,
    pub config: HubConfig,
    states: DashMap<String, Arc<AppState>>,
    live_sockets: AtomicUsize,
    /// Offline delivery: targets of a publish are recorded in the outbox through it.
    pub notifier: Option<Arc<Notifier>>,
    /// Where app webhook events go.
    hooks: Option<HookSender>,
    /// Other nodes, when running as a cluster.
    cluster: Option<Arc<dyn ClusterView>>,
}

/// Why a connection was refused after the app was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectRefusal {
    Disabled,
    OverQuota,
}

impl ConnectRefusal {
    pub fn code(self) -> u16 {
        match self {
            Self::Disabled => codes::APP_DISABLED,
            Self::OverQuota => codes::OVER_QUOTA,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Disabled => "app is disabled",
            Self::OverQuota => "app is over its connection quota",
        }
    }
}

impl Hub {
    pub fn new(
        apps: Arc<AppRegistry>,
        config: HubConfig,
        notifier: Option<Arc<Notifier>>,
        hooks: Option<HookSender>,
        cluster: Option<Arc<dyn ClusterView>>,
    ) -> Self {
        Self {
            apps,
            config,
            states: DashMap::new(),
            live_sockets: AtomicUsize::new(0),
            notifier,
            hooks,
            cluster,
        }
    }

    /// In a cluster, waits until every node has processed what it sent before, so queries
    /// of cluster-wide state see everything a client was already told. Free on one node.
    pub async fn sync_cluster(&self) {
        if let Some(cluster) = &self.cluster {
            cluster.barrier().await;
        }
    }

    /// Sends the subscription counts that changed since the last call, in every app that
    /// has subscription counting on. The server calls it on a short timer.
    pub fn flush_subscription_counts(&self) {
        for state in self.states.iter() {
            state.flush_subscription_counts();
        }
    }

    /// The live state of an app, if any socket of it was ever seen on this node.
    pub fn existing_state(&self, app_id: &str) -> Option<Arc<AppState>> {
        self.states.get(app_id).map(|s| s.clone())
    }

    /// The live state of `app`, created on first use. A newer copy of the app (changed
    /// settings) replaces the one the state holds.
    pub fn state(&self, app: &Arc<App>) -> Arc<AppState> {
        if let Some(state) = self.states.get(&app.id) {
            state.refresh(app);
            return state.clone();
        }
        self.states
            .entry(app.id.clone())
            .or_insert_with(|| {
                Arc::new(AppState::new(
                    app.clone(),
                    self.hooks.clone(),
                    self.cluster.clone(),
                ))
            })
            .clone()
    }

    /// Registers a new socket for `app`, enforcing the enabled flag and connection quota.
    pub fn connect(
        &self,
        state: &Arc<AppState>,
    ) -> Result<(SocketHandle, SocketReceiver), ConnectRefusal> {
        let app = state.app();
        if !app.enabled {
            return Err(ConnectRefusal::Disabled);
        }
        let before = state.connections.fetch_add(1, Ordering::AcqRel);
        if let Some(max) = app.settings.max_connections
            && before >= max as usize
        {
            state.connections.fetch_sub(1, Ordering::AcqRel);
            return Err(ConnectRefusal::OverQuota);
        }
        let (handle, receiver) = SocketHandle::new(self.config.queue_len);
        state.sockets.insert(handle.id(), handle.clone());
        self.live_sockets.fetch_add(1, Ordering::AcqRel);
        state.metrics.connections.increment(1.0);
        state.metrics.connections_total.increment(1);
        state
            .debug
            .emit(|| debug::DebugEventKind::connected(handle.id()));
        Ok((handle, receiver))
    }

    /// Forgets a socket: leaves every channel it joined (with presence side effects), signs
    /// it out and frees its quota slot. Called exactly once per connection, from its guard.
    pub fn disconnect(
        &self,
        state: &AppState,
        handle: &SocketHandle,
        channels: impl IntoIterator<Item = ChannelName>,
        signed_in: Option<&SignedIn>,
    ) {
        for channel in channels {
            state.unsubscribe(handle.id(), &channel);
        }
        if let Some(user) = signed_in {
            state.sign_out(handle, user);
        }
        if state.sockets.remove(&handle.id()).is_some() {
            state.connections.fetch_sub(1, Ordering::AcqRel);
            self.live_sockets.fetch_sub(1, Ordering::AcqRel);
            state.metrics.connections.decrement(1.0);
            state
                .debug
                .emit(|| debug::DebugEventKind::disconnected(handle.id()));
        }
    }

    /// Asks every socket of every app to close with `code` (graceful shutdown uses 4200).
    pub fn close_all(&self, code: u16) {
        for state in self.states.iter() {
            for socket in state.sockets.iter() {
                socket.close(code);
            }
        }
    }

    pub fn live_sockets(&self) -> usize {
        self.live_sockets.load(Ordering::Acquire)
    }

    /// Frames queued to this node's sockets since start, every app together.
    pub fn frames_sent(&self) -> u64 {
        self.states
            .iter()
            .map(|state| state.frames_sent.load(Ordering::Relaxed))
            .sum()
    }
}
