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

#[derive(Default)]
pub struct Channel {
    pub subscribers: HashMap<SocketId, Subscriber>,
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

    /// The members as Pusher's presence `subscription_succeeded` lists them.
    pub fn presence_frame(&self, channel: &str) -> Frame {
        let snapshot = frames::PresenceSnapshot {
            members: self
                .members
                .iter()
                .map(|(id, m)| (&**id, &*m.user_info))
                .collect(),
        };
        frames::presence_subscription_succeeded(channel, &snapshot)
    }

    /// Members as Pushi lists them: user id → channel_data.
    pub fn pushi_members(&self) -> Vec<(&str, &RawValue)> {
        self.members
            .iter()
            .map(|(id, m)| (&**id, &*m.channel_data))
            .collect()
    }

    /// Sends the dialect-appropriate frame to every subscriber but `except`.
    pub fn broadcast(&self, frames: &DialectFrames<'_>, except: Option<SocketId>) -> usize {
        let mut sent = 0;
        for (id, sub) in &self.subscribers {
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
