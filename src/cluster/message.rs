//! What nodes tell each other, as JSON on the broker.
//!
//! Every message names its sender and carries the sender's sequence number, so a receiver
//! that sees a gap knows it missed something and asks for a snapshot.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::protocol::pushi::Stamp;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub node: String,
    pub seq: u64,
    pub body: Body,
}

/// Externally tagged (`{"publish": {...}}`): serde cannot buffer the raw JSON of a publish's
/// data through an internally tagged enum.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// An event to deliver to this node's sockets.
    Publish(RemotePublish),
    /// A change of the sender's local state.
    Change(Change),
    /// I am alive.
    Heartbeat,
    /// The sender's whole local state: replaces what receivers knew of it.
    Snapshot(NodeState),
    /// Please send your snapshot (a node started, reconnected, or saw a gap).
    SyncRequest,
    /// Close every socket of `user_id` in `app` (`terminate_connections`).
    Terminate { app: String, user_id: String },
    /// The sender is shutting down: forget its state now.
    Leaving,
    /// Answer me once you have sent everything before this (a barrier for queries).
    Ping { id: u64 },
    /// The answer to `to`'s ping `id`; it follows everything its sender sent before it.
    Pong { id: u64, to: String },
}

/// One publish, as every other node replays it to its own sockets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemotePublish {
    pub app: String,
    pub channels: Vec<String>,
    pub event: String,
    pub data: Box<RawValue>,
    pub exclude: Option<String>,
    pub user_id: Option<String>,
    #[serde(default)]
    pub extra: Map<String, Value>,
    #[serde(default)]
    pub stamps: Option<Vec<Stamp>>,
    /// A client event's sending socket: such an event is delivered but never cached.
    #[serde(default)]
    pub sender: Option<String>,
}

/// A change to one node's share of the cluster state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A socket subscribed (`+1`) or unsubscribed (`-1`).
    Subscriptions {
        app: String,
        channel: String,
        delta: i64,
    },
    /// A socket joined a presence channel as `user_id`.
    Join {
        app: String,
        channel: String,
        user_id: String,
        user_info: String,
        channel_data: String,
    },
    /// A socket of `user_id` left a presence channel.
    Leave {
        app: String,
        channel: String,
        user_id: String,
    },
    /// A socket signed in as `user_id` (Pusher user authentication; for watchlists).
    SignIn { app: String, user_id: String },
    /// A signed-in socket of `user_id` closed.
    SignOut { app: String, user_id: String },
}

/// A node's share of the cluster: per app and channel, how many of its sockets are
/// subscribed and which presence members they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeState {
    pub apps: HashMap<String, HashMap<String, ChannelShare>>,
    /// Signed-in users per app: user id → how many of the node's sockets signed in as them.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub signed_in: HashMap<String, HashMap<String, i64>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ChannelShare {
    pub subscriptions: i64,
    pub members: HashMap<String, MemberShare>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberShare {
    pub user_info: String,
    pub channel_data: String,
    /// Sockets of this user on the node.
    pub sockets: i64,
}

impl NodeState {
    /// Applies one change; returns nothing, the caller compares membership before and after.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Subscriptions {
                app,
                channel,
                delta,
            } => {
                let channels = self.apps.entry(app.clone()).or_default();
                let share = channels.entry(channel.clone()).or_default();
                share.subscriptions += delta;
                if share.subscriptions <= 0 && share.members.is_empty() {
                    channels.remove(channel);
                }
            }
            Change::Join {
                app,
                channel,
                user_id,
                user_info,
                channel_data,
            } => {
                let share = self
                    .apps
                    .entry(app.clone())
                    .or_default()
                    .entry(channel.clone())
                    .or_default();
                let member = share.members.entry(user_id.clone()).or_insert(MemberShare {
                    user_info: user_info.clone(),
                    channel_data: channel_data.clone(),
                    sockets: 0,
                });
                member.sockets += 1;
                member.user_info = user_info.clone();
                member.channel_data = channel_data.clone();
            }
            Change::Leave {
                app,
                channel,
                user_id,
            } => {
                if let Some(channels) = self.apps.get_mut(app)
                    && let Some(share) = channels.get_mut(channel)
                {
                    if let Some(member) = share.members.get_mut(user_id) {
                        member.sockets -= 1;
                        if member.sockets <= 0 {
                            share.members.remove(user_id);
                        }
                    }
                    if share.subscriptions <= 0 && share.members.is_empty() {
                        channels.remove(channel);
                    }
                }
            }
            Change::SignIn { app, user_id } => {
                *self
                    .signed_in
                    .entry(app.clone())
                    .or_default()
                    .entry(user_id.clone())
                    .or_default() += 1;
            }
            Change::SignOut { app, user_id } => {
                if let Some(users) = self.signed_in.get_mut(app)
                    && let Some(sockets) = users.get_mut(user_id)
                {
                    *sockets -= 1;
                    if *sockets <= 0 {
                        users.remove(user_id);
                    }
                }
            }
        }
        self.apps.retain(|_, channels| !channels.is_empty());
        self.signed_in.retain(|_, users| !users.is_empty());
    }

    pub fn is_signed_in(&self, app: &str, user_id: &str) -> bool {
        self.signed_in
            .get(app)
            .is_some_and(|users| users.contains_key(user_id))
    }

    pub fn channel(&self, app: &str, channel: &str) -> Option<&ChannelShare> {
        self.apps.get(app)?.get(channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_round_trip_with_raw_data() {
        let envelope = Envelope {
            node: "n".into(),
            seq: 1,
            body: Body::Publish(RemotePublish {
                app: "1".into(),
                channels: vec!["c".into()],
                event: "e".into(),
                data: RawValue::from_string(r#"{"a":[1,2]}"#.into()).unwrap(),
                exclude: None,
                user_id: None,
                extra: Map::new(),
                stamps: None,
                sender: None,
            }),
        };
        let text = serde_json::to_string(&envelope).unwrap();
        let back: Envelope = serde_json::from_str(&text).unwrap();
        match back.body {
            Body::Publish(p) => assert_eq!(p.data.get(), r#"{"a":[1,2]}"#),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn joins_and_leaves_count_sockets_per_user() {
        let mut state = NodeState::default();
        let join = Change::Join {
            app: "1".into(),
            channel: "presence-a".into(),
            user_id: "u".into(),
            user_info: "{}".into(),
            channel_data: "{}".into(),
        };
        let leave = Change::Leave {
            app: "1".into(),
            channel: "presence-a".into(),
            user_id: "u".into(),
        };
        state.apply(&join);
        state.apply(&join);
        state.apply(&leave);
        assert_eq!(
            state.channel("1", "presence-a").unwrap().members["u"].sockets,
            1
        );
        state.apply(&leave);
        assert!(state.apps.is_empty());
    }

    #[test]
    fn sign_ins_count_sockets_per_user() {
        let mut state = NodeState::default();
        let user = |kind: fn(String, String) -> Change| kind("1".into(), "u".into());
        let sign_in = |app, user_id| Change::SignIn { app, user_id };
        let sign_out = |app, user_id| Change::SignOut { app, user_id };
        state.apply(&user(sign_in));
        state.apply(&user(sign_in));
        state.apply(&user(sign_out));
        assert!(state.is_signed_in("1", "u"));
        state.apply(&user(sign_out));
        assert!(!state.is_signed_in("1", "u"));
        assert!(state.signed_in.is_empty());
    }
}
