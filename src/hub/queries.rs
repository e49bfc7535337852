//! Read-side questions about an app's live state: channel stats, presence members, sockets.
//!
//! Answers are cluster-wide where the API promises that (this node's state plus its replicas
//! of the others'). Presence members of this node and of the others are merged in exactly one
//! place, [`AppState::members`] / [`AppState::members_in`], which every reply and count uses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::value::RawValue;

use super::app_state::AppState;
use super::channel::Channel;
use super::socket::SocketId;
use crate::protocol::frames::{self, Frame};
use crate::protocol::{ChannelKind, ChannelName};

/// Counts for one channel, as the HTTP API reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelStats {
    pub subscription_count: usize,
    pub user_count: usize,
}

/// A presence channel's members on every node, by user id, sorted so replies are stable.
pub struct Members(BTreeMap<Arc<str>, Member>);

/// What clients see of one member: Pusher shows `user_info`, Pushi the whole `channel_data`.
struct Member {
    user_info: Arc<RawValue>,
    channel_data: Arc<RawValue>,
}

impl Members {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(|id| &**id)
    }

    /// User id → user_info, as Pusher's presence snapshot lists them.
    pub fn user_infos(&self) -> Vec<(&str, &RawValue)> {
        self.0
            .iter()
            .map(|(id, m)| (&**id, &*m.user_info))
            .collect()
    }

    /// User id → channel_data, as Pushi's replies list them.
    pub fn channel_data(&self) -> Vec<(&str, &RawValue)> {
        self.0
            .iter()
            .map(|(id, m)| (&**id, &*m.channel_data))
            .collect()
    }
}

impl AppState {
    /// The presence members of `channel`, cluster-wide.
    pub fn members(&self, channel: &str) -> Members {
        match self.channels.get(channel) {
            Some(ch) => self.merge_members(channel, Some(&ch)),
            None => self.merge_members(channel, None),
        }
    }

    /// The presence members of `channel`, cluster-wide, for a reply built under the channel's
    /// lock: `ch` is the channel as this node holds it.
    pub fn members_in(&self, ch: &Channel, channel: &str) -> Members {
        self.merge_members(channel, Some(ch))
    }

    /// The one place this node's and the other nodes' members are merged. A user with
    /// sockets here is shown as this node knows them.
    fn merge_members(&self, channel: &str, here: Option<&Channel>) -> Members {
        let mut members = BTreeMap::new();
        if let Some(cluster) = &self.cluster {
            for (user, (info, data)) in cluster.remote_members(&self.app.read().id, channel) {
                if let (Ok(user_info), Ok(channel_data)) =
                    (RawValue::from_string(info), RawValue::from_string(data))
                {
                    let member = Member {
                        user_info: Arc::from(user_info),
                        channel_data: Arc::from(channel_data),
                    };
                    members.insert(Arc::from(user), member);
                }
            }
        }
        for (user, m) in here.iter().flat_map(|ch| &ch.members) {
            let member = Member {
                user_info: m.user_info.clone(),
                channel_data: m.channel_data.clone(),
            };
            members.insert(user.clone(), member);
        }
        Members(members)
    }

    /// Pusher's presence `subscription_succeeded` for `channel`, with the members of every
    /// node. `ch` is the channel as this node holds it (locked by the caller).
    pub fn presence_frame(&self, ch: &Channel, channel: &str) -> Frame {
        let members = self.members_in(ch, channel);
        let snapshot = frames::PresenceSnapshot {
            members: members.user_infos(),
        };
        frames::presence_subscription_succeeded(channel, &snapshot)
    }

    /// User ids present in a presence channel, cluster-wide, sorted.
    pub fn presence_user_ids(&self, channel: &str) -> Vec<String> {
        self.members(channel)
            .user_ids()
            .map(str::to_owned)
            .collect()
    }

    /// Whether a socket on this node is a presence member of `channel` as `user_id`.
    pub fn local_user_present(&self, channel: &str, user_id: &str) -> bool {
        self.channels
            .get(channel)
            .is_some_and(|c| c.members.contains_key(user_id))
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
            user_count: self.members(channel).len(),
        })
    }

    /// Occupied channels whose name starts with `prefix`, cluster-wide, sorted by name.
    pub fn occupied_channels(&self, prefix: &str) -> Vec<(Arc<str>, ChannelStats)> {
        let mut subscriptions: BTreeMap<Arc<str>, usize> = self
            .cluster
            .iter()
            .flat_map(|c| c.remote_channels(&self.app.read().id))
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, subs)| (Arc::from(name), subs.max(0) as usize))
            .collect();
        for c in self.channels.iter() {
            if c.key().starts_with(prefix) && !c.subscribers.is_empty() {
                *subscriptions.entry(c.key().clone()).or_default() += c.subscription_count();
            }
        }
        subscriptions
            .into_iter()
            .filter(|(_, subs)| *subs > 0)
            .map(|(name, subs)| {
                // Only presence channels have members.
                let user_count = match ChannelKind::of(&name) {
                    ChannelKind::Presence => self.members(&name).len(),
                    _ => 0,
                };
                let stats = ChannelStats {
                    subscription_count: subs,
                    user_count,
                };
                (name, stats)
            })
            .collect()
    }

    /// Every socket of this app with the channels it joined (for Pushi's `/sockets`).
    pub fn sockets_with_channels(&self) -> Vec<(SocketId, Vec<String>)> {
        let mut map: BTreeMap<SocketId, Vec<String>> = self
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
}
