//! The hub as the cluster sees it: the [`LocalNode`] implementation.
//!
//! The cluster defines the trait and receives the hub through it at start, so the cluster
//! never names the hub's types; this file is the whole of what other nodes can cause here.
//! Each call finds the app's live state on this node and does nothing if there is none.

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::value::RawValue;

use super::Hub;
use super::app_state::AppState;
use super::debug::DebugEventKind;
use super::publish::{EventData, Publish};
use super::socket::SocketId;
use crate::cluster::{ChannelShare, LocalNode, MemberShare, NodeState, RemotePublish};
use crate::protocol::ChannelName;
use crate::protocol::channel::NameRules;

#[async_trait]
impl LocalNode for Hub {
    fn share(&self) -> NodeState {
        let mut share = NodeState::default();
        for state in self.states.iter() {
            let channels = channel_shares(state.value());
            if !channels.is_empty() {
                share.apps.insert(state.key().clone(), channels);
            }
            let users: HashMap<String, i64> = state
                .users
                .iter()
                .map(|u| (u.key().to_string(), u.value().len() as i64))
                .collect();
            if !users.is_empty() {
                share.signed_in.insert(state.key().clone(), users);
            }
        }
        share
    }

    /// Fans another node's publish out to this node's sockets. Cache channels keep a server
    /// event even before this node has any socket of the app, so a later subscriber here gets
    /// it.
    async fn deliver(&self, remote: RemotePublish) {
        // The publishing node parsed these names; Pushi's rules accept every valid name.
        let channels: Vec<ChannelName> = remote
            .channels
            .iter()
            .filter_map(|c| ChannelName::parse(c, NameRules::Pushi).ok())
            .collect();
        let state = match self.existing_state(&remote.app) {
            Some(state) => state,
            None if remote.sender.is_none() && channels.iter().any(ChannelName::is_cache) => {
                match self.apps.by_id(&remote.app).await {
                    Ok(Some(app)) => self.state(&app),
                    _ => return,
                }
            }
            None => return,
        };
        let publish = Publish {
            exclude: remote.exclude.as_deref().and_then(SocketId::parse),
            sender: remote.sender.as_deref().and_then(SocketId::parse),
            user_id: remote.user_id.as_deref(),
            extra: Some(&remote.extra),
            ..Publish::new(&channels, &remote.event, &remote.data)
        };
        let data = EventData::new(&remote.data);
        let sent = state.fan_out(
            &publish,
            &data,
            remote.stamps.as_deref(),
            self.config.cache_ttl,
        );
        state
            .debug
            .emit(|| DebugEventKind::published(&publish, &data, sent, true));
    }

    fn has_member(&self, app: &str, channel: &str, user_id: &str) -> bool {
        self.existing_state(app)
            .is_some_and(|s| s.local_user_present(channel, user_id))
    }

    fn has_signed_in(&self, app: &str, user_id: &str) -> bool {
        self.existing_state(app)
            .is_some_and(|s| s.local_user_signed_in(user_id))
    }

    fn member_changed(
        &self,
        app: &str,
        channel: &str,
        added: bool,
        user_id: &str,
        user_info: &RawValue,
        channel_data: &RawValue,
    ) {
        if let Some(state) = self.existing_state(app)
            && let Some(ch) = state.channels.get(channel)
        {
            ch.announce_member(channel, added, user_id, user_info, channel_data, None);
        }
    }

    fn user_changed(&self, app: &str, user_id: &str, online: bool) {
        if let Some(state) = self.existing_state(app) {
            state.announce_remote_user(user_id, online);
        }
    }

    fn subscriptions_changed(&self, app: &str, channel: &str) {
        if let Some(state) = self.existing_state(app) {
            state.subscription_count_changed(channel, false);
        }
    }

    fn terminate(&self, app: &str, user_id: &str) {
        if let Some(state) = self.existing_state(app) {
            state.terminate_local_user(user_id);
        }
    }
}

/// One app's channels as this node's share of the cluster state: subscriptions and members.
fn channel_shares(state: &AppState) -> HashMap<String, ChannelShare> {
    state
        .channels
        .iter()
        .filter(|c| !c.subscribers.is_empty())
        .map(|c| {
            let members = c
                .members
                .iter()
                .map(|(user, m)| {
                    let member = MemberShare {
                        user_info: m.user_info.get().to_owned(),
                        channel_data: m.channel_data.get().to_owned(),
                        sockets: i64::from(m.sockets),
                    };
                    (user.to_string(), member)
                })
                .collect();
            let share = ChannelShare {
                subscriptions: c.subscribers.len() as i64,
                members,
            };
            (c.key().to_string(), share)
        })
        .collect()
}
