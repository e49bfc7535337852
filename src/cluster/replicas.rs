//! This node's copies of the other nodes' shares, and what changes to them mean here.
//!
//! Every cluster-wide question the hub asks is answered from these copies. Whenever a copy
//! changes — one change, a snapshot, a node gone — the presence members and signed-in users
//! it touches are compared cluster-wide before and after, so this node announces exactly the
//! joins, leaves and online/offline transitions the cluster as a whole went through.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::LocalNode;
use super::message::{Change, NodeState};

/// What this node knows of another one.
struct Replica {
    state: NodeState,
    last_seen: Instant,
    /// The last sequence number received from it.
    seq: u64,
}

#[derive(Default)]
pub(super) struct Replicas(RwLock<HashMap<String, Replica>>);

impl Replicas {
    /// The other live nodes, sorted.
    pub fn nodes(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.0.read().keys().cloned().collect();
        nodes.sort();
        nodes
    }

    pub fn len(&self) -> usize {
        self.0.read().len()
    }

    /// Notes that `node` sent message `seq`; returns whether messages are missing before it
    /// (or the node is new), so its deltas cannot be trusted until its next snapshot.
    pub fn heard_from(&self, node: &str, seq: u64) -> bool {
        let mut replicas = self.0.write();
        match replicas.get_mut(node) {
            Some(r) => {
                r.last_seen = Instant::now();
                let gap = seq != r.seq + 1;
                r.seq = seq;
                gap
            }
            None => {
                replicas.insert(
                    node.to_owned(),
                    Replica {
                        state: NodeState::default(),
                        last_seen: Instant::now(),
                        seq,
                    },
                );
                tracing::info!(node = %node, "cluster node joined");
                true
            }
        }
    }

    /// Nodes not heard from for longer than `timeout`.
    pub fn silent_for(&self, timeout: Duration) -> Vec<String> {
        self.0
            .read()
            .iter()
            .filter(|(_, r)| r.last_seen.elapsed() > timeout)
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn user_present(&self, app: &str, channel: &str, user_id: &str) -> bool {
        self.0.read().values().any(|r| {
            r.state
                .channel(app, channel)
                .is_some_and(|c| c.members.contains_key(user_id))
        })
    }

    pub fn user_signed_in(&self, app: &str, user_id: &str) -> bool {
        self.0
            .read()
            .values()
            .any(|r| r.state.is_signed_in(app, user_id))
    }

    pub fn subscriptions(&self, app: &str, channel: &str) -> i64 {
        self.0
            .read()
            .values()
            .filter_map(|r| r.state.channel(app, channel))
            .map(|c| c.subscriptions.max(0))
            .sum()
    }

    pub fn members(&self, app: &str, channel: &str) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for r in self.0.read().values() {
            if let Some(c) = r.state.channel(app, channel) {
                for (user, m) in &c.members {
                    out.insert(user.clone(), (m.user_info.clone(), m.channel_data.clone()));
                }
            }
        }
        out
    }

    pub fn channels(&self, app: &str) -> HashMap<String, i64> {
        let mut out: HashMap<String, i64> = HashMap::new();
        for r in self.0.read().values() {
            if let Some(channels) = r.state.apps.get(app) {
                for (name, share) in channels {
                    *out.entry(name.clone()).or_default() += share.subscriptions.max(0);
                }
            }
        }
        out
    }

    /// Whether `user_id` is a member anywhere: here or on any other node.
    fn present_anywhere(&self, here: &dyn LocalNode, app: &str, channel: &str, user: &str) -> bool {
        self.user_present(app, channel, user) || here.has_member(app, channel, user)
    }

    /// Whether any socket, on this node or another, is signed in as `user_id`.
    fn signed_in_anywhere(&self, here: &dyn LocalNode, app: &str, user_id: &str) -> bool {
        self.user_signed_in(app, user_id) || here.has_signed_in(app, user_id)
    }

    /// Applies one change of `node`'s share and announces what it changed cluster-wide.
    pub fn apply(&self, here: &dyn LocalNode, node: &str, change: Change) {
        let member = match &change {
            Change::Join {
                app,
                channel,
                user_id,
                ..
            }
            | Change::Leave {
                app,
                channel,
                user_id,
            } => Some((app.clone(), channel.clone(), user_id.clone())),
            Change::Subscriptions { .. } | Change::SignIn { .. } | Change::SignOut { .. } => None,
        };
        let signed_in = match &change {
            Change::SignIn { app, user_id } | Change::SignOut { app, user_id } => {
                let was = self.signed_in_anywhere(here, app, user_id);
                Some((app.clone(), user_id.clone(), was))
            }
            _ => None,
        };
        if let Change::Subscriptions { app, channel, .. } = &change {
            here.subscriptions_changed(app, channel);
        }
        let before = member
            .as_ref()
            .map(|(a, c, u)| self.present_anywhere(here, a, c, u));
        if let Some(r) = self.0.write().get_mut(node) {
            r.state.apply(&change);
        }
        if let Some((app, user_id, was)) = signed_in {
            let now = self.signed_in_anywhere(here, &app, &user_id);
            if was != now {
                here.user_changed(&app, &user_id, now);
            }
        }
        let (Some((app, channel, user_id)), Some(before)) = (member, before) else {
            return;
        };
        let after = self.present_anywhere(here, &app, &channel, &user_id);
        if before != after {
            let (info, data) = match &change {
                Change::Join {
                    user_info,
                    channel_data,
                    ..
                } => (user_info.clone(), channel_data.clone()),
                _ => (
                    "{}".to_owned(),
                    format!(
                        r#"{{"user_id":{}}}"#,
                        serde_json::Value::from(user_id.clone())
                    ),
                ),
            };
            announce(here, &app, &channel, after, &user_id, &info, &data);
        }
    }

    /// Replaces (or, with `None`, drops) what this node knows of `node`, announcing every
    /// presence member and signed-in user that appears or disappears cluster-wide as a result.
    pub fn replace(&self, here: &dyn LocalNode, node: &str, state: Option<NodeState>, seq: u64) {
        let old = self
            .0
            .read()
            .get(node)
            .map(|r| r.state.clone())
            .unwrap_or_default();
        let new = state.clone().unwrap_or_default();
        // Members whose presence may change: those in either version.
        let mut candidates: Vec<(String, String, String, String, String)> = Vec::new();
        for version in [&old, &new] {
            for (app, channels) in &version.apps {
                for (channel, share) in channels {
                    for (user, m) in &share.members {
                        candidates.push((
                            app.clone(),
                            channel.clone(),
                            user.clone(),
                            m.user_info.clone(),
                            m.channel_data.clone(),
                        ));
                    }
                }
            }
        }
        let before: Vec<bool> = candidates
            .iter()
            .map(|(a, c, u, ..)| self.present_anywhere(here, a, c, u))
            .collect();
        // Signed-in users whose online state may change (watchlists).
        let users: HashSet<(String, String)> = [&old, &new]
            .into_iter()
            .flat_map(|v| &v.signed_in)
            .flat_map(|(app, users)| users.keys().map(|u| (app.clone(), u.clone())))
            .collect();
        let users_before: Vec<((String, String), bool)> = users
            .into_iter()
            .map(|(app, user)| {
                let was = self.signed_in_anywhere(here, &app, &user);
                ((app, user), was)
            })
            .collect();
        {
            let mut replicas = self.0.write();
            match state {
                Some(state) => {
                    replicas.insert(
                        node.to_owned(),
                        Replica {
                            state,
                            last_seen: Instant::now(),
                            seq,
                        },
                    );
                }
                None => {
                    replicas.remove(node);
                }
            }
        }
        notice_count_changes(here, &old, &new);
        for ((app, user), was) in users_before {
            let now = self.signed_in_anywhere(here, &app, &user);
            if was != now {
                here.user_changed(&app, &user, now);
            }
        }
        let mut announced = HashSet::new();
        for ((app, channel, user, info, data), was) in candidates.iter().zip(before) {
            let now = self.present_anywhere(here, app, channel, user);
            if was != now && announced.insert((app.clone(), channel.clone(), user.clone())) {
                announce(here, app, channel, now, user, info, data);
            }
        }
    }
}

/// Subscription counting: tells this node of every channel whose count differs between two
/// versions of a node's share (a snapshot that healed a gap, a node that died).
fn notice_count_changes(here: &dyn LocalNode, old: &NodeState, new: &NodeState) {
    let count = |state: &NodeState, app: &str, channel: &str| {
        state
            .apps
            .get(app)
            .and_then(|channels| channels.get(channel))
            .map_or(0, |share| share.subscriptions)
    };
    for (version, other) in [(old, new), (new, old)] {
        for (app, channels) in &version.apps {
            for (channel, share) in channels {
                if share.subscriptions != count(other, app, channel) {
                    here.subscriptions_changed(app, channel);
                }
            }
        }
    }
}

/// Tells this node that `user_id` joined or left `channel` cluster-wide.
fn announce(
    here: &dyn LocalNode,
    app: &str,
    channel: &str,
    added: bool,
    user_id: &str,
    info: &str,
    data: &str,
) {
    let raw = |text: &str| RawValue::from_string(text.to_owned()).ok();
    let (Some(info), Some(data)) = (raw(info), raw(data)) else {
        return;
    };
    here.member_changed(app, channel, added, user_id, &info, &data);
}
