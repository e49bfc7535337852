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
pub mod local_node;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use std::collections::{HashMap, HashSet};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::{Mutex, RwLock};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::app::App;
use crate::cluster::{ClusterView, RemotePublish};
use crate::notify::matching::Notifier;
use crate::notify::pusher_webhooks::{HookEvent, HookSender};
use crate::protocol::frames::{self, Frame};
use crate::protocol::pushi::{self, Stamp};
use crate::protocol::{self, ChannelKind, ChannelName, Dialect, codes};
use crate::registry::AppRegistry;
use crate::store::{NewEvent, StoreError};
use channel::{Channel, DialectFrames, PresenceJoin, Subscriber};
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

/// What a publish asks for. `data` is raw JSON (a string for HTTP triggers).
pub struct Publish<'a> {
    pub channels: &'a [ChannelName],
    pub event: &'a str,
    pub data: &'a RawValue,
    /// The socket that must not receive it (the sender, or the trigger's `socket_id`).
    pub exclude: Option<SocketId>,
    /// Set on client events in presence channels: who sent it.
    pub user_id: Option<&'a str>,
    /// Store the event in each channel's history (Pushi) before delivering it.
    pub persist: bool,
    /// The socket that sent it, recorded as the stored event's owner.
    pub owner: Option<SocketId>,
    /// Extra keys of a Pushi REST request, forwarded in Pushi frames and stored.
    pub extra: Option<&'a Map<String, Value>>,
}

impl<'a> Publish<'a> {
    /// A plain publish: no persistence, no exclusion, no extras.
    pub fn new(channels: &'a [ChannelName], event: &'a str, data: &'a RawValue) -> Self {
        Self {
            channels,
            event,
            data,
            exclude: None,
            user_id: None,
            persist: false,
            owner: None,
            extra: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
    #[error("event data is {size} bytes; this app allows at most {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("could not store the event: {0}")]
    Store(#[from] StoreError),
}

/// An empty map, for publishes without extra keys.
fn no_extra() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
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
            if *state.app() != **app {
                *state.app.write() = app.clone();
            }
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

    /// The one publish path: validate, store if asked (before anyone sees the event, so an
    /// acknowledged publish survives a crash), then fan out to every local subscriber of each
    /// channel, serialising once per channel and dialect. Returns the number of frames queued.
    pub async fn publish(
        &self,
        state: &AppState,
        publish: &Publish<'_>,
    ) -> Result<usize, PublishError> {
        Self::validate(state, publish)?;
        let stamps = if publish.persist {
            Some(self.persist(state, publish).await?)
        } else {
            None
        };
        self.record_deliveries(state, publish, stamps.as_deref())
            .await?;
        let sent = state.fan_out(publish, stamps.as_deref(), self.config.cache_ttl);
        if let Some(cluster) = &self.cluster {
            cluster
                .publish(RemotePublish {
                    app: state.app().id.clone(),
                    channels: publish.channels.iter().map(|c| c.to_string()).collect(),
                    event: publish.event.to_owned(),
                    data: publish.data.to_owned(),
                    exclude: publish.exclude.map(|s| s.to_string()),
                    user_id: publish.user_id.map(str::to_owned),
                    extra: publish.extra.cloned().unwrap_or_default(),
                    stamps,
                })
                .await;
        }
        metrics::counter!(crate::metrics::EVENTS_PUBLISHED)
            .increment(publish.channels.len() as u64);
        metrics::counter!(crate::metrics::FRAMES_SENT).increment(sent as u64);
        Ok(sent)
    }

    fn validate(state: &AppState, publish: &Publish<'_>) -> Result<(), PublishError> {
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
        if let Some(extra) = publish.extra
            && let Some(key) = ["mid", "timestamp"]
                .into_iter()
                .find(|k| extra.contains_key(*k))
        {
            return Err(PublishError::Invalid(format!(
                "\"{key}\" is set by the server and cannot be sent"
            )));
        }
        Ok(())
    }

    /// Stores one event per channel (with the users' history links) and returns their stamps.
    async fn persist(
        &self,
        state: &AppState,
        publish: &Publish<'_>,
    ) -> Result<Vec<Stamp>, PublishError> {
        let app = state.app();
        let data = pushi::data_string(publish.data);
        let extra: &Map<String, Value> = match publish.extra {
            Some(extra) => extra,
            None => no_extra(),
        };
        let timestamp = crate::clock::now_unix_f64();
        let mut stamps = Vec::with_capacity(publish.channels.len());
        let mut events = Vec::with_capacity(publish.channels.len());
        for channel in publish.channels {
            let snapshot = pushi::Message {
                channel: channel.as_str(),
                event: publish.event,
                data: &data,
                extra,
                stamp: None,
            };
            let stamp = Stamp {
                mid: uuid::Uuid::new_v4().to_string(),
                timestamp,
            };
            events.push(NewEvent {
                mid: stamp.mid.clone(),
                channel: channel.to_string(),
                event: publish.event.to_owned(),
                owner_id: publish.owner.map(|o| o.to_string()),
                timestamp,
                data: snapshot.to_json(),
            });
            stamps.push(stamp);
        }
        self.apps.store().save_events(&app.id, &events).await?;
        Ok(stamps)
    }

    /// Records the offline deliveries a publish causes, before anyone sees the event, so a
    /// publish that was acknowledged cannot lose them. Apps without targets pay one cached
    /// lookup.
    async fn record_deliveries(
        &self,
        state: &AppState,
        publish: &Publish<'_>,
        stamps: Option<&[Stamp]>,
    ) -> Result<(), PublishError> {
        let Some(notifier) = &self.notifier else {
            return Ok(());
        };
        let app = state.app();
        if !notifier.has_targets(&app.id).await? {
            return Ok(());
        }
        let data = pushi::data_string(publish.data);
        let extra: &Map<String, Value> = match publish.extra {
            Some(extra) => extra,
            None => no_extra(),
        };
        let messages: Vec<(String, Map<String, Value>)> = publish
            .channels
            .iter()
            .enumerate()
            .map(|(i, channel)| {
                let message = pushi::Message {
                    channel: channel.as_str(),
                    event: publish.event,
                    data: &data,
                    extra,
                    stamp: stamps.and_then(|s| s.get(i)),
                };
                let map = match serde_json::to_value(&message) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                (channel.to_string(), map)
            })
            .collect();
        let deliveries = notifier.deliveries_for(&app.id, &messages).await?;
        notifier.enqueue(&app.id, &deliveries).await?;
        Ok(())
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

/// The sockets a peer channel reaches: those of its two users in the presence channel, if
/// both are present and at least one of them joined with `peer: true`. In a cluster the other
/// user (and their flag) may be on another node, so there only presence is required; the
/// sender was checked to be one of the pair on its own node.
fn peer_members<'c>(
    ch: &'c Channel,
    a: &str,
    b: &str,
    present_elsewhere: impl Fn(&str) -> bool,
    clustered: bool,
) -> Vec<&'c Subscriber> {
    let present = |u: &str| ch.members.contains_key(u) || present_elsewhere(u);
    if a == b || !present(a) || !present(b) {
        return Vec::new();
    }
    let pair: Vec<&Subscriber> = ch
        .subscribers
        .values()
        .filter(|s| s.user_id.as_deref().is_some_and(|u| u == a || u == b))
        .collect();
    if clustered || pair.iter().any(|s| s.peer) {
        pair
    } else {
        Vec::new()
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
    /// Subscription counting: channels whose count changed since the last flush, and whether
    /// a socket of this node changed it (only that node reports the webhook).
    counts_changed: Mutex<HashMap<Arc<str>, bool>>,
    connections: AtomicUsize,
    hooks: Option<HookSender>,
    cluster: Option<Arc<dyn ClusterView>>,
}

impl AppState {
    fn new(
        app: Arc<App>,
        hooks: Option<HookSender>,
        cluster: Option<Arc<dyn ClusterView>>,
    ) -> Self {
        Self {
            hooks,
            cluster,
            app: RwLock::new(app),
            sockets: DashMap::new(),
            channels: DashMap::new(),
            users: DashMap::new(),
            watchers: DashMap::new(),
            cache: DashMap::new(),
            counts_changed: Mutex::new(HashMap::new()),
            connections: AtomicUsize::new(0),
        }
    }

    pub fn app(&self) -> Arc<App> {
        self.app.read().clone()
    }

    /// Tells the other nodes about a change of this node's share (cluster mode only).
    fn share(&self, change: impl FnOnce() -> crate::cluster::Change) {
        if let Some(cluster) = &self.cluster {
            cluster.changed(change());
        }
    }

    fn remote_user_present(&self, channel: &str, user_id: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.remote_user_present(&self.app.read().id, channel, user_id))
    }

    fn remote_subscriptions(&self, channel: &str) -> i64 {
        self.cluster
            .as_ref()
            .map(|c| c.remote_subscriptions(&self.app.read().id, channel))
            .unwrap_or(0)
    }

    /// Whether a socket on this node is a presence member of `channel` as `user_id`.
    pub fn local_user_present(&self, channel: &str, user_id: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.members.contains_key(user_id))
    }

    /// Presence members cluster-wide: user id → (user_info, channel_data).
    pub fn all_members(
        &self,
        channel: &str,
    ) -> std::collections::BTreeMap<String, (Arc<RawValue>, Arc<RawValue>)> {
        let mut out = std::collections::BTreeMap::new();
        if let Some(cluster) = &self.cluster {
            for (user, (info, data)) in cluster.remote_members(&self.app.read().id, channel) {
                if let (Ok(info), Ok(data)) =
                    (RawValue::from_string(info), RawValue::from_string(data))
                {
                    out.insert(user, (Arc::from(info), Arc::from(data)));
                }
            }
        }
        if let Some(ch) = self.channels.get(channel) {
            for (user, m) in &ch.members {
                out.insert(
                    user.to_string(),
                    (m.user_info.clone(), m.channel_data.clone()),
                );
            }
        }
        out
    }

    /// Subscription counting: notes that `channel`'s count changed, for the next
    /// [`flush_subscription_counts`](Self::flush_subscription_counts). `here`: a socket of
    /// this node subscribed or left (rather than another node's).
    pub fn subscription_count_changed(&self, channel: &str, here: bool) {
        if !self.app.read().settings.subscription_count
            || !ChannelKind::of(channel).has_subscription_count()
        {
            return;
        }
        let mut changed = self.counts_changed.lock();
        *changed.entry(Arc::from(channel)).or_default() |= here;
    }

    /// Sends each changed channel's cluster-wide count to its Pusher subscribers on this node
    /// (`pusher_internal:subscription_count`) and, for changes made here, to the webhooks.
    /// Called on a timer, so a crowd joining a channel costs one message per subscriber per
    /// tick rather than one per join.
    pub fn flush_subscription_counts(&self) {
        let changed = std::mem::take(&mut *self.counts_changed.lock());
        for (channel, here) in changed {
            let local = self.channels.get(&channel);
            let here_count = local.as_ref().map_or(0, |c| c.subscribers.len() as i64);
            let count = (here_count + self.remote_subscriptions(&channel)).max(0) as u64;
            if let Some(ch) = local {
                let frame = frames::subscription_count(&channel, count);
                for sub in ch.subscribers.values() {
                    if sub.dialect == Dialect::Pusher {
                        sub.handle.send(frame.clone());
                    }
                }
            }
            if here {
                self.report(|| HookEvent::SubscriptionCount {
                    channel: channel.to_string(),
                    subscription_count: count,
                });
            }
        }
    }

    /// Reports an event to the app's webhooks, if it has any. Never blocks.
    pub fn report(&self, event: impl FnOnce() -> HookEvent) {
        if let Some(hooks) = &self.hooks {
            let app = self.app.read();
            if !app.settings.webhooks.is_empty() {
                let _ = hooks.send((app.id.clone(), event()));
            }
        }
    }

    /// Joins `handle` to `channel` and queues the reply `reply` builds from the channel —
    /// under the channel's lock, so no member event can overtake it.
    pub fn subscribe(
        &self,
        handle: &SocketHandle,
        dialect: Dialect,
        channel: &ChannelName,
        presence: Option<PresenceJoin>,
        reply: impl FnOnce(&Channel) -> Option<Frame>,
    ) -> Result<SubscribeOutcome, SubscribeRefusal> {
        let app = self.app();
        let mut entry = self.channels.entry(channel.shared().clone()).or_default();
        let ch = entry.value_mut();
        if ch.is_subscribed(handle.id()) {
            if let Some(frame) = reply(ch) {
                handle.send(frame);
            }
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
        if ch.subscribers.is_empty() && self.remote_subscriptions(channel.as_str()) == 0 {
            self.report(|| HookEvent::ChannelOccupied {
                channel: channel.to_string(),
            });
        }
        ch.subscribers.insert(
            handle.id(),
            Subscriber {
                handle: handle.clone(),
                dialect,
                user_id: presence.as_ref().map(|p| p.user_id.clone()),
                peer: presence.as_ref().is_some_and(|p| p.peer),
            },
        );
        let app_id = &app.id;
        self.share(|| crate::cluster::Change::Subscriptions {
            app: app_id.clone(),
            channel: channel.to_string(),
            delta: 1,
        });
        self.subscription_count_changed(channel.as_str(), true);
        if let Some(join) = &presence {
            let new_here = ch.add_member(join);
            // Another node's socket of this user already made them a member.
            let elsewhere = self.remote_user_present(channel.as_str(), &join.user_id);
            self.share(|| crate::cluster::Change::Join {
                app: app_id.clone(),
                channel: channel.to_string(),
                user_id: join.user_id.to_string(),
                user_info: join.user_info.get().to_owned(),
                channel_data: join.channel_data.get().to_owned(),
            });
            if new_here && !elsewhere {
                ch.announce_member(
                    channel.as_str(),
                    true,
                    &join.user_id,
                    &join.user_info,
                    &join.channel_data,
                    Some(handle.id()),
                );
                self.report(|| HookEvent::MemberAdded {
                    channel: channel.to_string(),
                    user_id: join.user_id.to_string(),
                });
            }
        }
        if let Some(frame) = reply(ch) {
            handle.send(frame);
        }
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
        let app_id = self.app.read().id.clone();
        self.share(|| crate::cluster::Change::Subscriptions {
            app: app_id.clone(),
            channel: channel.to_string(),
            delta: -1,
        });
        self.subscription_count_changed(channel.as_str(), true);
        if let Some(user_id) = &sub.user_id {
            self.share(|| crate::cluster::Change::Leave {
                app: app_id.clone(),
                channel: channel.to_string(),
                user_id: user_id.to_string(),
            });
        }
        if let Some(user_id) = &sub.user_id
            && let Some(member) = ch.remove_member(user_id)
            && !self.remote_user_present(channel.as_str(), user_id)
        {
            ch.announce_member(
                channel.as_str(),
                false,
                user_id,
                &member.user_info,
                &member.channel_data,
                None,
            );
            self.report(|| HookEvent::MemberRemoved {
                channel: channel.to_string(),
                user_id: user_id.to_string(),
            });
        }
        if ch.subscribers.is_empty() {
            entry.remove();
            if self.remote_subscriptions(channel.as_str()) == 0 {
                self.report(|| HookEvent::ChannelVacated {
                    channel: channel.to_string(),
                });
            }
        }
        true
    }

    /// Delivers one publish to this node's sockets. Pushi sockets get each event once per
    /// publish even when several of its channels match (Pushi's rule); Pusher sockets get one
    /// frame per channel, as Pusher clients expect.
    fn fan_out(&self, publish: &Publish<'_>, stamps: Option<&[Stamp]>, ttl: Duration) -> usize {
        let dedup = publish.channels.len() > 1
            || publish
                .channels
                .iter()
                .any(|c| c.kind() == ChannelKind::Peer);
        let mut pushi_seen: HashSet<SocketId> = HashSet::new();
        let data_string = std::cell::OnceCell::new();
        let extra: &Map<String, Value> = match publish.extra {
            Some(extra) => extra,
            None => no_extra(),
        };
        let mut sent = 0;
        for (i, channel) in publish.channels.iter().enumerate() {
            let stamp = stamps.and_then(|s| s.get(i));
            let pusher = || {
                frames::channel_event(
                    publish.event,
                    channel.as_str(),
                    publish.data,
                    publish.user_id,
                )
            };
            let pushi = || {
                pushi::Message {
                    channel: channel.as_str(),
                    event: publish.event,
                    data: data_string.get_or_init(|| pushi::data_string(publish.data)),
                    extra,
                    stamp,
                }
                .to_frame()
            };
            let frames = DialectFrames::new(&pusher, &pushi);
            if channel.is_cache() {
                self.cache.insert(
                    channel.shared().clone(),
                    CachedEvent {
                        frame: frames.get(Dialect::Pusher).clone(),
                        event: publish.event.to_owned(),
                        data: publish.data.to_owned(),
                        stored: Instant::now(),
                    },
                );
                self.expire_cache(ttl);
            }
            let mut deliver = |sub: &Subscriber| {
                let id = sub.handle.id();
                if Some(id) == publish.exclude
                    || (dedup && sub.dialect == Dialect::Pushi && !pushi_seen.insert(id))
                {
                    return;
                }
                if sub.handle.send(frames.get(sub.dialect).clone()) {
                    sent += 1;
                }
            };
            if let Some(ch) = self.channels.get(channel.as_str()) {
                ch.subscribers.values().for_each(&mut deliver);
            }
            if let Some((presence, a, b)) = channel.peer_parts()
                && let Some(ch) = self.channels.get(presence.as_str())
            {
                let elsewhere = |u: &str| self.remote_user_present(presence.as_str(), u);
                peer_members(&ch, a, b, elsewhere, self.cluster.is_some())
                    .into_iter()
                    .for_each(&mut deliver);
            }
        }
        sent
    }

    /// Whether `socket` may act on peer channel `channel` without having subscribed to it:
    /// it is in the paired presence channel as one of the two users.
    pub fn peer_eligible(&self, socket: SocketId, channel: &ChannelName) -> bool {
        let Some((presence, a, b)) = channel.peer_parts() else {
            return false;
        };
        self.channels.get(presence.as_str()).is_some_and(|ch| {
            ch.subscribers
                .get(&socket)
                .and_then(|s| s.user_id.as_deref())
                .is_some_and(|u| u == a || u == b)
        })
    }

    /// Pushi's view of a channel's presence members, cluster-wide (user id → channel_data).
    pub fn pushi_members(&self, channel: &str) -> Vec<(Arc<str>, Arc<RawValue>)> {
        self.all_members(channel)
            .into_iter()
            .map(|(id, (_, data))| (Arc::from(id), data))
            .collect()
    }

    /// Pusher's presence `subscription_succeeded` for `channel`, with the members of every
    /// node. `ch` is the channel as this node holds it (locked by the caller).
    pub fn presence_frame(&self, ch: &Channel, channel: &str) -> Frame {
        if self.cluster.is_none() {
            return ch.presence_frame(channel);
        }
        let mut members: std::collections::BTreeMap<String, Arc<RawValue>> = self
            .cluster
            .iter()
            .flat_map(|c| c.remote_members(&self.app.read().id, channel))
            .filter_map(|(user, (info, _))| {
                RawValue::from_string(info)
                    .ok()
                    .map(|i| (user, Arc::from(i)))
            })
            .collect();
        for (user, m) in &ch.members {
            members.insert(user.to_string(), m.user_info.clone());
        }
        let snapshot = frames::PresenceSnapshot {
            members: members
                .iter()
                .map(|(id, info)| (id.as_str(), &**info))
                .collect(),
        };
        frames::presence_subscription_succeeded(channel, &snapshot)
    }

    /// Pushi's members for a reply built under the channel's lock.
    pub fn pushi_members_with(
        &self,
        ch: &Channel,
        channel: &str,
    ) -> Vec<(Arc<str>, Arc<RawValue>)> {
        if self.cluster.is_none() {
            return ch
                .members
                .iter()
                .map(|(id, m)| (id.clone(), m.channel_data.clone()))
                .collect();
        }
        let mut out: std::collections::BTreeMap<Arc<str>, Arc<RawValue>> = self
            .cluster
            .iter()
            .flat_map(|c| c.remote_members(&self.app.read().id, channel))
            .filter_map(|(user, (_, data))| {
                RawValue::from_string(data)
                    .ok()
                    .map(|d| (Arc::from(user), Arc::from(d)))
            })
            .collect();
        for (user, m) in &ch.members {
            out.insert(user.clone(), m.channel_data.clone());
        }
        out.into_iter().collect()
    }

    /// Every socket of this app with the channels it joined (for Pushi's `/sockets`).
    pub fn sockets_with_channels(&self) -> Vec<(SocketId, Vec<String>)> {
        let mut map: std::collections::BTreeMap<SocketId, Vec<String>> = self
            .sockets
            .iter()
            .map(|s| (*s.key(), Vec::new()))
            .collect();
        for ch in self.channels.iter() {
            for id in ch.subscribers.keys() {
                if let Some(list) = map.get_mut(id) {
                    list.push(ch.key().to_string());
                }
            }
        }
        map.into_iter()
            .map(|(id, mut channels)| {
                channels.sort();
                (id, channels)
            })
            .collect()
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
        self.share(|| crate::cluster::Change::SignIn {
            app: self.app.read().id.clone(),
            user_id: user.user_id.to_string(),
        });
        if first && !self.remote_user_signed_in(&user.user_id) {
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
            .filter(|w| self.users.contains_key(&***w) || self.remote_user_signed_in(w))
            .map(|w| &**w)
            .collect();
        if !online.is_empty() {
            handle.send(frames::watchlist_event("online", &online));
        }
    }

    fn sign_out(&self, handle: &SocketHandle, user: &SignedIn) {
        let (removed, last) = match self.users.entry(user.user_id.clone()) {
            Entry::Occupied(mut e) => {
                let before = e.get().len();
                e.get_mut().retain(|h| !h.same_socket(handle));
                let after = e.get().len();
                if after == 0 {
                    e.remove();
                }
                (after < before, after == 0)
            }
            Entry::Vacant(_) => (false, false),
        };
        if removed {
            self.share(|| crate::cluster::Change::SignOut {
                app: self.app.read().id.clone(),
                user_id: user.user_id.to_string(),
            });
        }
        for watched in &user.watchlist {
            if let Entry::Occupied(mut e) = self.watchers.entry(watched.clone()) {
                e.get_mut().retain(|h| !h.same_socket(handle));
                if e.get().is_empty() {
                    e.remove();
                }
            }
        }
        if last && !self.remote_user_signed_in(&user.user_id) {
            self.notify_watchers(&user.user_id, "offline");
        }
    }

    /// Whether a socket on this node is signed in as `user_id`.
    pub fn local_user_signed_in(&self, user_id: &str) -> bool {
        self.users.contains_key(user_id)
    }

    /// Whether a socket on another node is signed in as `user_id`.
    fn remote_user_signed_in(&self, user_id: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.remote_user_signed_in(&self.app.read().id, user_id))
    }

    /// Another node's sockets made `user_id` come online or go offline cluster-wide: tell
    /// this node's watchers.
    pub fn announce_remote_user(&self, user_id: &str, online: bool) {
        self.notify_watchers(user_id, if online { "online" } else { "offline" });
    }

    fn notify_watchers(&self, user_id: &str, what: &str) {
        if let Some(watchers) = self.watchers.get(user_id) {
            let frame = frames::watchlist_event(what, &[user_id]);
            for w in watchers.iter() {
                w.send(frame.clone());
            }
        }
    }

    /// Closes every socket signed in as `user_id`, on every node; returns how many here.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        if let Some(cluster) = &self.cluster {
            cluster.terminate(&self.app.read().id, user_id);
        }
        self.terminate_local_user(user_id)
    }

    /// Closes this node's sockets signed in as `user_id`.
    pub fn terminate_local_user(&self, user_id: &str) -> usize {
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

    /// Counts for one channel, cluster-wide; `None` if no node has a subscriber.
    pub fn channel_stats(&self, channel: &str) -> Option<ChannelStats> {
        let local = self
            .channels
            .get(channel)
            .map(|c| c.subscription_count())
            .unwrap_or(0);
        let subscriptions = local + self.remote_subscriptions(channel).max(0) as usize;
        (subscriptions > 0).then(|| ChannelStats {
            subscription_count: subscriptions,
            user_count: self.presence_user_ids(channel).len(),
        })
    }

    /// Occupied channels whose name starts with `prefix`, cluster-wide, sorted by name.
    pub fn occupied_channels(&self, prefix: &str) -> Vec<(Arc<str>, ChannelStats)> {
        let mut merged: std::collections::BTreeMap<String, (usize, HashSet<String>)> = self
            .cluster
            .iter()
            .flat_map(|c| c.remote_channels(&self.app.read().id))
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, (subs, users))| (name, (subs.max(0) as usize, users)))
            .collect();
        for c in self.channels.iter() {
            if c.key().starts_with(prefix) && !c.subscribers.is_empty() {
                let entry = merged.entry(c.key().to_string()).or_default();
                entry.0 += c.subscription_count();
                entry.1.extend(c.members.keys().map(|k| k.to_string()));
            }
        }
        merged
            .into_iter()
            .filter(|(_, (subs, _))| *subs > 0)
            .map(|(name, (subs, users))| {
                (
                    Arc::from(name),
                    ChannelStats {
                        subscription_count: subs,
                        user_count: users.len(),
                    },
                )
            })
            .collect()
    }

    /// User ids present in a presence channel, cluster-wide, sorted.
    pub fn presence_user_ids(&self, channel: &str) -> Vec<String> {
        self.all_members(channel).into_keys().collect()
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
