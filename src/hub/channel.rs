//! One channel's subscribers and, for presence channels, its members.
//!
//! Presence is counted per user, not per socket: a user with three tabs open is one member,
//! `member_added` goes out when their first socket joins and `member_removed` when their last
//! one leaves.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::socket::{SocketHandle, SocketId};
use crate::protocol::frames::{self, Frame};

pub struct Subscriber {
    pub handle: SocketHandle,
    /// The presence user this socket joined as.
    pub user_id: Option<Arc<str>>,
}

pub struct Member {
    pub info: Arc<RawValue>,
    /// How many of this user's sockets are subscribed.
    pub sockets: u32,
}

#[derive(Default)]
pub struct Channel {
    pub subscribers: HashMap<SocketId, Subscriber>,
    /// Presence members by user id (empty for other channels).
    pub members: HashMap<Arc<str>, Member>,
}

/// A presence join: who, and what others see of them.
pub struct PresenceJoin {
    pub user_id: Arc<str>,
    pub user_info: Arc<RawValue>,
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

    /// The members as the presence `subscription_succeeded` lists them.
    pub fn presence_frame(&self, channel: &str) -> Frame {
        let snapshot = frames::PresenceSnapshot {
            members: self
                .members
                .iter()
                .map(|(id, m)| (&**id, &*m.info))
                .collect(),
        };
        frames::presence_subscription_succeeded(channel, &snapshot)
    }

    /// Sends `frame` to every subscriber but `except`.
    pub fn broadcast(&self, frame: &Frame, except: Option<SocketId>) -> usize {
        let mut sent = 0;
        for (id, sub) in &self.subscribers {
            if Some(*id) != except && sub.handle.send(frame.clone()) {
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
                // The latest connection's info wins, as in Pusher and Pushi.
                member.info = join.user_info.clone();
                false
            }
            None => {
                self.members.insert(
                    join.user_id.clone(),
                    Member {
                        info: join.user_info.clone(),
                        sockets: 1,
                    },
                );
                true
            }
        }
    }

    /// Removes one of a member's sockets; returns true if that was the user's last one.
    pub fn remove_member(&mut self, user_id: &str) -> bool {
        let Some(member) = self.members.get_mut(user_id) else {
            return false;
        };
        member.sockets = member.sockets.saturating_sub(1);
        if member.sockets == 0 {
            self.members.remove(user_id);
            true
        } else {
            false
        }
    }
}
