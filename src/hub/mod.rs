//! The hub: every app's live state, and the one path every event takes.
//!
//! Sockets, channels, presence members, signed-in users and cached events live here, sharded
//! per app and per channel (`DashMap`), never behind one global lock. All operations are
//! synchronous: they only touch memory and queue frames, so they can run from a connection
//! task, an HTTP handler or a `Drop` guard alike.
//!
//! [`Hub::publish`] is the single publish function. HTTP triggers, batch triggers and client
//! events all go through it: validate, serialise once per channel, fan out to local sockets.

pub mod channel;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::RwLock;
use serde_json::value::RawValue;

use crate::apps::{App, AppRegistry};
use crate::protocol::frames::{self, Frame};
use crate::protocol::{self, ChannelKind, ChannelName, codes};
use channel::{Channel, PresenceJoin, Subscriber};
pub use socket::{SocketHandle, SocketId, SocketReceiver};

/// Tunables that are the same for every app.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Seconds of client silence before the server pings (also announced to clients).
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer before it is closed with 4201.
    pub pong_timeout: Duration,
    /// Frames a socket may have queued before it counts as too slow and is closed.
    pub queue_len: usize,
    /// How long a cache channel keeps its last event.
    pub cache_ttl: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            queue_len: 1024,
            cache_ttl: Duration::from_secs(30 * 60),
        }
    }
}

pub struct Hub {
    pub apps: AppRegistry,
    pub config: HubConfig,
    states: DashMap<String, Arc<AppState>>,
    live_sockets: AtomicUsize,
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

/// What a publish asks for. `data` is raw JSON (a string for HTTP triggers).
pub struct Publish<'a> {
    pub channels: &'a [ChannelName],
    pub event: &'a str,
    pub data: &'a RawValue,
    /// The socket that must not receive it (the sender, or the trigger's `socket_id`).
    pub exclude: Option<SocketId>,
    /// Set on client events in presence channels: who sent it.
    pub user_id: Option<&'a str>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
    #[error("event data is {size} bytes; this app allows at most {limit}")]
    TooLarge { size: usize, limit: usize },
}

#[derive(Debug, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Subscribed,
    /// The socket was already subscribed; the success reply was sent again.
    AlreadySubscribed,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeRefusal {
    #[error("presence channel {channel} is full ({limit} members)")]
    PresenceFull { channel: String, limit: usize },
}

/// An event kept for a cache channel.
pub struct CachedEvent {
    pub frame: Frame,
    pub event: String,
    pub data: Box<RawValue>,
    pub stored: Instant,
}

/// Counts for one channel, as the HTTP API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStats {
    pub subscription_count: usize,
    pub user_count: usize,
}

impl Hub {
    pub fn new(apps: AppRegistry, config: HubConfig) -> Self {
        Self {
            apps,
            config,
            states: DashMap::new(),
            live_sockets: AtomicUsize::new(0),
        }
    }

    /// The live state of `app`, created on first use. A newer copy of the app (changed
    /// settings) replaces the one the state holds.
    pub fn state(&self, app: &Arc<App>) -> Arc<AppState> {
        if let Some(state) = self.states.get(&app.id) {
            if *state.app() != **app {
                *state.app.write() = app.clone();
            }
            return state.clone();
        }
        self.states
            .entry(app.id.clone())
            .or_insert_with(|| Arc::new(AppState::new(app.clone())))
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
        metrics::gauge!(crate::metrics::CONNECTIONS).increment(1.0);
        metrics::counter!(crate::metrics::CONNECTIONS_TOTAL).increment(1);
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
            metrics::gauge!(crate::metrics::CONNECTIONS).decrement(1.0);
        }
    }

    /// The one publish path. Validates, then fans out to every local subscriber of each
    /// channel, serialising once per channel. Returns the number of frames queued.
    pub fn publish(&self, state: &AppState, publish: &Publish<'_>) -> Result<usize, PublishError> {
        let app = state.app();
        if publish.channels.is_empty() {
            return Err(PublishError::Invalid("no channel given".into()));
        }
        if publish.channels.len() > protocol::MAX_TRIGGER_CHANNELS {
            return Err(PublishError::Invalid(format!(
                "at most {} channels per event",
                protocol::MAX_TRIGGER_CHANNELS
            )));
        }
        protocol::channel::validate_event_name(publish.event).map_err(PublishError::Invalid)?;
        let size = payload_size(publish.data);
        if size > app.settings.max_payload_bytes {
            return Err(PublishError::TooLarge {
                size,
                limit: app.settings.max_payload_bytes,
            });
        }
        let mut sent = 0;
        for channel in publish.channels {
            sent += state.publish_local(channel, publish, self.config.cache_ttl);
        }
        metrics::counter!(crate::metrics::EVENTS_PUBLISHED)
            .increment(publish.channels.len() as u64);
        metrics::counter!(crate::metrics::FRAMES_SENT).increment(sent as u64);
        Ok(sent)
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
}

/// The size the payload limit applies to: a string's contents, or the raw JSON otherwise.
fn payload_size(data: &RawValue) -> usize {
    match serde_json::from_str::<&str>(data.get()) {
        Ok(s) => s.len(),
        Err(_) => match serde_json::from_str::<String>(data.get()) {
            Ok(s) => s.len(),
            Err(_) => data.get().len(),
        },
    }
}

/// A signed-in user as the connection remembers it, so it can be signed out.
pub struct SignedIn {
    pub user_id: Arc<str>,
    pub watchlist: Vec<Arc<str>>,
}

/// One app's live state.
pub struct AppState {
    app: RwLock<Arc<App>>,
    sockets: DashMap<SocketId, SocketHandle>,
    channels: DashMap<Arc<str>, Channel>,
    /// Signed-in users and their sockets.
    users: DashMap<Arc<str>, Vec<SocketHandle>>,
    /// Watched user id → sockets whose sign-in watchlist names it.
    watchers: DashMap<Arc<str>, Vec<SocketHandle>>,
    cache: DashMap<Arc<str>, CachedEvent>,
    connections: AtomicUsize,
}

impl AppState {
    fn new(app: Arc<App>) -> Self {
        Self {
            app: RwLock::new(app),
            sockets: DashMap::new(),
            channels: DashMap::new(),
            users: DashMap::new(),
            watchers: DashMap::new(),
            cache: DashMap::new(),
            connections: AtomicUsize::new(0),
        }
    }

    pub fn app(&self) -> Arc<App> {
        self.app.read().clone()
    }

    /// Joins `handle` to `channel` and queues the success reply (with the member list for
    /// presence) — under the channel's lock, so no member event can overtake it.
    pub fn subscribe(
        &self,
        handle: &SocketHandle,
        channel: &ChannelName,
        presence: Option<PresenceJoin>,
    ) -> Result<SubscribeOutcome, SubscribeRefusal> {
        let app = self.app();
        let mut entry = self.channels.entry(channel.shared().clone()).or_default();
        let ch = entry.value_mut();
        let reply = |ch: &Channel| {
            if channel.is_presence() {
                ch.presence_frame(channel.as_str())
            } else {
                frames::subscription_succeeded(channel.as_str())
            }
        };
        if ch.is_subscribed(handle.id()) {
            handle.send(reply(ch));
            return Ok(SubscribeOutcome::AlreadySubscribed);
        }
        if let Some(join) = &presence {
            let limit = app.settings.max_presence_members;
            if !ch.members.contains_key(&join.user_id) && ch.members.len() >= limit {
                let empty = ch.subscribers.is_empty();
                drop(entry);
                if empty {
                    self.channels
                        .remove_if(channel.as_str(), |_, c| c.subscribers.is_empty());
                }
                return Err(SubscribeRefusal::PresenceFull {
                    channel: channel.to_string(),
                    limit,
                });
            }
        }
        ch.subscribers.insert(
            handle.id(),
            Subscriber {
                handle: handle.clone(),
                user_id: presence.as_ref().map(|p| p.user_id.clone()),
            },
        );
        if let Some(join) = &presence
            && ch.add_member(join)
        {
            let added = frames::member_added(channel.as_str(), &join.user_id, &join.user_info);
            ch.broadcast(&added, Some(handle.id()));
        }
        handle.send(reply(ch));
        Ok(SubscribeOutcome::Subscribed)
    }

    /// Leaves `channel`; returns whether the socket was subscribed. The last member socket of
    /// a user leaving tells the others `member_removed`; an empty channel is dropped.
    pub fn unsubscribe(&self, socket: SocketId, channel: &ChannelName) -> bool {
        let Entry::Occupied(mut entry) = self.channels.entry(channel.shared().clone()) else {
            return false;
        };
        let ch = entry.get_mut();
        let Some(sub) = ch.subscribers.remove(&socket) else {
            return false;
        };
        if let Some(user_id) = &sub.user_id
            && ch.remove_member(user_id)
        {
            let removed = frames::member_removed(channel.as_str(), user_id);
            ch.broadcast(&removed, None);
        }
        if ch.subscribers.is_empty() {
            entry.remove();
        }
        true
    }

    fn publish_local(&self, channel: &ChannelName, publish: &Publish<'_>, ttl: Duration) -> usize {
        let frame = frames::channel_event(
            publish.event,
            channel.as_str(),
            publish.data,
            publish.user_id,
        );
        if channel.is_cache() {
            self.cache.insert(
                channel.shared().clone(),
                CachedEvent {
                    frame: frame.clone(),
                    event: publish.event.to_owned(),
                    data: publish.data.to_owned(),
                    stored: Instant::now(),
                },
            );
            self.expire_cache(ttl);
        }
        match self.channels.get(channel.as_str()) {
            Some(ch) => ch.broadcast(&frame, publish.exclude),
            None => 0,
        }
    }

    /// The cached last event of a cache channel, if still fresh.
    pub fn cached(&self, channel: &ChannelName, ttl: Duration) -> Option<(Frame, Duration)> {
        let entry = self.cache.get(channel.as_str())?;
        let age = entry.stored.elapsed();
        if age >= ttl {
            drop(entry);
            self.cache.remove(channel.as_str());
            return None;
        }
        Some((entry.frame.clone(), ttl - age))
    }

    /// Cache info for the HTTP API: event name, data and remaining TTL.
    pub fn cached_event(
        &self,
        channel: &str,
        ttl: Duration,
    ) -> Option<(String, Box<RawValue>, Duration)> {
        let entry = self.cache.get(channel)?;
        let age = entry.stored.elapsed();
        (age < ttl).then(|| (entry.event.clone(), entry.data.clone(), ttl - age))
    }

    /// Drops expired cache entries so the cache cannot grow without bound.
    fn expire_cache(&self, ttl: Duration) {
        // Cheap amortisation: sweep only when the cache has grown past a power of two.
        let len = self.cache.len();
        if len >= 64 && len.is_power_of_two() {
            self.cache.retain(|_, e| e.stored.elapsed() < ttl);
        }
    }

    /// Signs `handle` in as `user`: registers it for `terminate_connections`, tells watchers
    /// the user came online (first socket), and tells this socket which watched users are
    /// online now.
    pub fn sign_in(&self, handle: &SocketHandle, user: &SignedIn) {
        let first = {
            let mut sockets = self.users.entry(user.user_id.clone()).or_default();
            sockets.push(handle.clone());
            sockets.len() == 1
        };
        if first {
            self.notify_watchers(&user.user_id, "online");
        }
        for watched in &user.watchlist {
            self.watchers
                .entry(watched.clone())
                .or_default()
                .push(handle.clone());
        }
        let online: Vec<&str> = user
            .watchlist
            .iter()
            .filter(|w| self.users.contains_key(&***w))
            .map(|w| &**w)
            .collect();
        if !online.is_empty() {
            handle.send(frames::watchlist_event("online", &online));
        }
    }

    fn sign_out(&self, handle: &SocketHandle, user: &SignedIn) {
        let last = match self.users.entry(user.user_id.clone()) {
            Entry::Occupied(mut e) => {
                e.get_mut().retain(|h| !h.same_socket(handle));
                let empty = e.get().is_empty();
                if empty {
                    e.remove();
                }
                empty
            }
            Entry::Vacant(_) => false,
        };
        for watched in &user.watchlist {
            if let Entry::Occupied(mut e) = self.watchers.entry(watched.clone()) {
                e.get_mut().retain(|h| !h.same_socket(handle));
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        if last {
            self.notify_watchers(&user.user_id, "offline");
        }
    }

    fn notify_watchers(&self, user_id: &str, what: &str) {
        if let Some(watchers) = self.watchers.get(user_id) {
            let frame = frames::watchlist_event(what, &[user_id]);
            for w in watchers.iter() {
                w.send(frame.clone());
            }
        }
    }

    /// Closes every socket signed in as `user_id`; returns how many.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        self.users
            .get(user_id)
            .map(|sockets| {
                for s in sockets.iter() {
                    s.close(codes::UNAUTHORIZED);
                }
                sockets.len()
            })
            .unwrap_or(0)
    }

    pub fn channel_stats(&self, channel: &str) -> Option<ChannelStats> {
        self.channels.get(channel).map(|c| ChannelStats {
            subscription_count: c.subscription_count(),
            user_count: c.user_count(),
        })
    }

    /// Occupied channels whose name starts with `prefix`, sorted by name.
    pub fn occupied_channels(&self, prefix: &str) -> Vec<(Arc<str>, ChannelStats)> {
        let mut out: Vec<_> = self
            .channels
            .iter()
            .filter(|c| c.key().starts_with(prefix) && !c.subscribers.is_empty())
            .map(|c| {
                (
                    c.key().clone(),
                    ChannelStats {
                        subscription_count: c.subscription_count(),
                        user_count: c.user_count(),
                    },
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// User ids present in a presence channel.
    pub fn presence_user_ids(&self, channel: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .channels
            .get(channel)
            .map(|c| c.members.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        ids.sort();
        ids
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn is_subscribed(&self, socket: SocketId, channel: &ChannelName) -> bool {
        self.channels
            .get(channel.as_str())
            .is_some_and(|c| c.is_subscribed(socket))
    }

    /// The presence user id `socket` joined `channel` as.
    pub fn presence_user_of(&self, socket: SocketId, channel: &ChannelName) -> Option<Arc<str>> {
        if channel.kind() != ChannelKind::Presence {
            return None;
        }
        self.channels
            .get(channel.as_str())
            .and_then(|c| c.subscribers.get(&socket).and_then(|s| s.user_id.clone()))
    }
}
