//! One channel's subscribers and, for presence channels, its members.
//!
//! Presence is counted per user, not per socket: a user with three tabs open is one member,
//! `member_added` goes out when their first socket joins and `member_removed` when their last
//! one leaves. Subscribers remember their dialect, so each gets the frame shape it reads;
//! frames are built lazily, at most once per dialect.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::socket::{SocketHandle, SocketId};
use crate::protocol::Dialect;
use crate::protocol::frames::{self, Frame};
use crate::protocol::pushi;

pub struct Subscriber {
    pub handle: SocketHandle,
    pub dialect: Dialect,
    /// The presence user this socket joined as.
    pub user_id: Option<Arc<str>>,
    /// Pushi: the socket joined its presence channel with `peer: true`.
    pub peer: bool,
}

pub struct Member {
    /// What Pusher clients see of the member.
    pub user_info: Arc<RawValue>,
    /// The whole channel_data, as Pushi clients see the member.
    pub channel_data: Arc<RawValue>,
    /// How many of this user's sockets are subscribed.
    pub sockets: u32,
}

/// A channel's subscribers by socket.
///
/// Most channels have one subscriber or a handful (a user's own channel, a private chat), and a
/// hash map costs at least four slots plus control bytes even for one entry. A short vector,
/// grown one slot at a time and searched linearly, is smaller and as fast at that size; a
/// channel that grows past [`Subscribers::MAP_FROM`] switches to a map, and back when it
/// shrinks well below that.
pub enum Subscribers {
    Few(Vec<(SocketId, Subscriber)>),
    Many(HashMap<SocketId, Subscriber>),
}

impl Default for Subscribers {
    fn default() -> Self {
        Self::Few(Vec::new())
    }
}

impl Subscribers {
    /// Size at which a vector becomes a map.
    const MAP_FROM: usize = 16;
    /// Size at which a map goes back to being a vector (below `MAP_FROM`, so a channel
    /// hovering around the threshold does not convert on every change).
    const VEC_UNDER: usize = 8;

    pub fn len(&self) -> usize {
        match self {
            Self::Few(v) => v.len(),
            Self::Many(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, id: &SocketId) -> Option<&Subscriber> {
        match self {
            Self::Few(v) => v.iter().find(|(k, _)| k == id).map(|(_, s)| s),
            Self::Many(m) => m.get(id),
        }
    }

    pub fn contains_key(&self, id: &SocketId) -> bool {
        self.get(id).is_some()
    }

    /// Adds or replaces `id`'s entry; returns the one it replaced.
    pub fn insert(&mut self, id: SocketId, subscriber: Subscriber) -> Option<Subscriber> {
        match self {
            Self::Few(v) => {
                if let Some((_, old)) = v.iter_mut().find(|(k, _)| *k == id) {
                    return Some(std::mem::replace(old, subscriber));
                }
                if v.len() + 1 >= Self::MAP_FROM {
                    let mut map: HashMap<_, _> = v.drain(..).collect();
                    map.insert(id, subscriber);
                    *self = Self::Many(map);
                } else {
                    // Double from one slot, rather than Vec's default jump to four.
                    if v.len() == v.capacity() {
                        v.reserve_exact(v.len().max(1));
                    }
                    v.push((id, subscriber));
                }
                None
            }
            Self::Many(m) => m.insert(id, subscriber),
        }
    }

    pub fn remove(&mut self, id: &SocketId) -> Option<Subscriber> {
        match self {
            Self::Few(v) => {
                let at = v.iter().position(|(k, _)| k == id)?;
                let (_, removed) = v.swap_remove(at);
                if v.len() * 4 <= v.capacity() {
                    v.shrink_to(v.len() * 2);
                }
                Some(removed)
            }
            Self::Many(m) => {
                let removed = m.remove(id)?;
                if m.len() < Self::VEC_UNDER {
                    *self = Self::Few(m.drain().collect());
                }
                Some(removed)
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SocketId, &Subscriber)> {
        let (few, many) = match self {
            Self::Few(v) => (Some(v.iter().map(|(k, s)| (k, s))), None),
            Self::Many(m) => (None, Some(m.iter())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }

    pub fn keys(&self) -> impl Iterator<Item = &SocketId> {
        self.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Subscriber> {
        self.iter().map(|(_, s)| s)
    }
}

#[derive(Default)]
pub struct Channel {
    pub subscribers: Subscribers,
    /// Presence members by user id (empty for other channels).
    pub members: HashMap<Arc<str>, Member>,
}

/// A presence join: who, what others see of them, and Pushi's peer flag.
pub struct PresenceJoin {
    pub user_id: Arc<str>,
    pub user_info: Arc<RawValue>,
    pub channel_data: Arc<RawValue>,
    pub peer: bool,
}

/// One event's frame in each dialect, each built only if some recipient needs it.
pub struct DialectFrames<'a> {
    pusher: OnceCell<Frame>,
    pushi: OnceCell<Frame>,
    make_pusher: &'a dyn Fn() -> Frame,
    make_pushi: &'a dyn Fn() -> Frame,
}

impl<'a> DialectFrames<'a> {
    pub fn new(make_pusher: &'a dyn Fn() -> Frame, make_pushi: &'a dyn Fn() -> Frame) -> Self {
        Self {
            pusher: OnceCell::new(),
            pushi: OnceCell::new(),
            make_pusher,
            make_pushi,
        }
    }

    pub fn get(&self, dialect: Dialect) -> &Frame {
        match dialect {
            Dialect::Pusher => self.pusher.get_or_init(self.make_pusher),
            Dialect::Pushi => self.pushi.get_or_init(self.make_pushi),
        }
    }
}

impl Channel {
    pub fn subscription_count(&self) -> usize {
        self.subscribers.len()
    }

    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    pub fn is_subscribed(&self, id: SocketId) -> bool {
        self.subscribers.contains_key(&id)
    }

    /// Sends the dialect-appropriate frame to every subscriber but `except`.
    pub fn broadcast(&self, frames: &DialectFrames<'_>, except: Option<SocketId>) -> usize {
        let mut sent = 0;
        for (id, sub) in self.subscribers.iter() {
            if Some(*id) != except && sub.handle.send(frames.get(sub.dialect).clone()) {
                sent += 1;
            }
        }
        sent
    }

    /// Adds a presence member's socket; returns true if the user is new to the channel.
    pub fn add_member(&mut self, join: &PresenceJoin) -> bool {
        match self.members.get_mut(&join.user_id) {
            Some(member) => {
                member.sockets += 1;
                // The latest connection's data wins, as in Pusher and Pushi.
                member.user_info = join.user_info.clone();
                member.channel_data = join.channel_data.clone();
                false
            }
            None => {
                self.members.insert(
                    join.user_id.clone(),
                    Member {
                        user_info: join.user_info.clone(),
                        channel_data: join.channel_data.clone(),
                        sockets: 1,
                    },
                );
                true
            }
        }
    }

    /// Removes one of a member's sockets; returns the member if that was the user's last one.
    pub fn remove_member(&mut self, user_id: &str) -> Option<Member> {
        let member = self.members.get_mut(user_id)?;
        member.sockets = member.sockets.saturating_sub(1);
        if member.sockets == 0 {
            self.members.remove(user_id)
        } else {
            None
        }
    }

    /// Tells every subscriber that `user_id` joined or left, each in its dialect.
    pub fn announce_member(
        &self,
        channel: &str,
        added: bool,
        user_id: &str,
        user_info: &RawValue,
        channel_data: &RawValue,
        except: Option<SocketId>,
    ) {
        let pusher = || {
            if added {
                frames::member_added(channel, user_id, user_info)
            } else {
                frames::member_removed(channel, user_id)
            }
        };
        let pushi = || pushi::member_event(added, channel, channel_data);
        self.broadcast(&DialectFrames::new(&pusher, &pushi), except);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscriber() -> (SocketId, Subscriber) {
        let (handle, _queue) = SocketHandle::new(1);
        let id = handle.id();
        let sub = Subscriber {
            handle,
            dialect: Dialect::Pusher,
            user_id: None,
            peer: false,
        };
        (id, sub)
    }

    #[test]
    fn subscribers_switch_between_vector_and_map_without_losing_anyone() {
        let mut subs = Subscribers::default();
        let ids: Vec<SocketId> = (0..40)
            .map(|_| {
                let (id, sub) = subscriber();
                assert!(subs.insert(id, sub).is_none());
                id
            })
            .collect();
        assert!(matches!(subs, Subscribers::Many(_)));
        assert_eq!(subs.len(), 40);
        for id in &ids[5..] {
            assert!(subs.remove(id).is_some());
            assert!(subs.remove(id).is_none());
        }
        assert!(matches!(subs, Subscribers::Few(_)));
        assert_eq!(subs.len(), 5);
        let mut left: Vec<_> = subs.keys().copied().collect();
        left.sort();
        let mut expected = ids[..5].to_vec();
        expected.sort();
        assert_eq!(left, expected);
        assert!(ids[..5].iter().all(|id| subs.contains_key(id)));

        // Re-inserting an id replaces its entry instead of adding a second one.
        let (_, other) = subscriber();
        assert!(subs.insert(ids[0], other).is_some());
        assert_eq!(subs.len(), 5);
        for id in &ids[..5] {
            subs.remove(id);
        }
        assert!(subs.is_empty());
    }
}
