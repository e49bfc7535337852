//! One app's live state on this node, and joining and leaving its channels.
//!
//! Subscribing is where presence is decided: a member is announced when their first socket
//! joins anywhere in the cluster and removed when their last one leaves, and the joining
//! socket's reply is queued under the channel's lock so no member event can overtake it.
//! Subscription counting lives here too, because every subscribe and unsubscribe changes it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use parking_lot::{Mutex, RwLock};

use super::cache::CachedEvent;
use super::channel::{Channel, PresenceJoin, Subscriber};
use super::debug::{DebugEventKind, DebugTap};
use super::socket::{SocketHandle, SocketId};
use crate::app::App;
use crate::cluster::{Change, ClusterView};
use crate::metrics::AppMetrics;
use crate::notify::pusher_webhooks::{HookEvent, HookSender};
use crate::protocol::frames::{self, Frame};
use crate::protocol::{ChannelKind, ChannelName, Dialect};

/// One app's live state.
pub struct AppState {
    pub(super) app: RwLock<Arc<App>>,
    pub(super) sockets: DashMap<SocketId, SocketHandle>,
    pub(super) channels: DashMap<Arc<str>, Channel>,
    /// Signed-in users and their sockets.
    pub(super) users: DashMap<Arc<str>, Vec<SocketHandle>>,
    /// Watched user id → sockets whose sign-in watchlist names it.
    pub(super) watchers: DashMap<Arc<str>, Vec<SocketHandle>>,
    pub(super) cache: DashMap<Arc<str>, CachedEvent>,
    /// Subscription counting: channels whose count changed since the last flush, and whether
    /// a socket of this node changed it (only that node reports the webhook).
    counts_changed: Mutex<HashMap<Arc<str>, bool>>,
    pub(super) connections: AtomicUsize,
    /// Frames this node has queued to this app's sockets since start (the health details'
    /// `messages_sent`; the metric series cannot be read back).
    pub(super) frames_sent: AtomicU64,
    hooks: Option<HookSender>,
    pub(super) cluster: Option<Arc<dyn ClusterView>>,
    /// What the dashboard's debug console and live view watch.
    pub debug: DebugTap,
    /// This app's metric series.
    pub(super) metrics: AppMetrics,
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

impl AppState {
    pub(super) fn new(
        app: Arc<App>,
        hooks: Option<HookSender>,
        cluster: Option<Arc<dyn ClusterView>>,
    ) -> Self {
        let app_id = app.id.clone();
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
            frames_sent: AtomicU64::new(0),
            debug: DebugTap::default(),
            metrics: AppMetrics::new(&app_id),
        }
    }

    pub fn app(&self) -> Arc<App> {
        self.app.read().clone()
    }

    /// Takes a newer copy of the app (changed settings), if it differs.
    pub(super) fn refresh(&self, app: &Arc<App>) {
        if *self.app() != **app {
            *self.app.write() = app.clone();
        }
    }

    /// Tells the other nodes about a change of this node's share (cluster mode only).
    pub(super) fn share(&self, change: impl FnOnce() -> Change) {
        if let Some(cluster) = &self.cluster {
            cluster.changed(change());
        }
    }

    pub(super) fn remote_user_present(&self, channel: &str, user_id: &str) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|c| c.remote_user_present(&self.app.read().id, channel, user_id))
    }

    pub(super) fn remote_subscriptions(&self, channel: &str) -> i64 {
        self.cluster
            .as_ref()
            .map(|c| c.remote_subscriptions(&self.app.read().id, channel))
            .unwrap_or(0)
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
        self.share(|| Change::Subscriptions {
            app: app_id.clone(),
            channel: channel.to_string(),
            delta: 1,
        });
        self.subscription_count_changed(channel.as_str(), true);
        if let Some(join) = &presence {
            let new_here = ch.add_member(join);
            // Another node's socket of this user already made them a member.
            let elsewhere = self.remote_user_present(channel.as_str(), &join.user_id);
            self.share(|| Change::Join {
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
        self.debug.emit(|| {
            let user_id = presence.as_ref().map(|p| &*p.user_id);
            DebugEventKind::subscribed(handle.id(), channel, user_id)
        });
        self.metrics.subscriptions.increment(1.0);
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
        self.metrics.subscriptions.decrement(1.0);
        let app_id = self.app.read().id.clone();
        self.debug
            .emit(|| DebugEventKind::unsubscribed(socket, channel, sub.user_id.as_deref()));
        self.share(|| Change::Subscriptions {
            app: app_id.clone(),
            channel: channel.to_string(),
            delta: -1,
        });
        self.subscription_count_changed(channel.as_str(), true);
        if let Some(user_id) = &sub.user_id {
            self.share(|| Change::Leave {
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
}
