//! Several nodes behind a load balancer, behaving as one server.
//!
//! Nodes share nothing in memory. Each one keeps its own sockets in its hub and tells the
//! others, through a [`Broker`] (Redis pub/sub or NATS subjects), two things: every publish
//! (each node delivers it to its own sockets), and every change of its share of the cluster
//! state — subscription counts and presence members per channel. Each node keeps a replica of
//! every other node's share, so cluster-wide questions (is this user already a member? how
//! many subscribers does this channel have?) are answered from memory, without a round trip.
//!
//! Replicas heal themselves: messages carry per-node sequence numbers and a gap triggers a
//! snapshot request; every node re-sends its whole share periodically and whenever its broker
//! connection comes back. A node whose heartbeats stop for [`ClusterConfig::node_timeout`] is
//! forgotten, and its presence members are announced as gone to local sockets. Membership
//! events are decided by each node for its own sockets, from the same replicated state, so a
//! user with sockets on two nodes is one member and `member_added` reaches each socket once.
//!
//! # Who depends on whom
//!
//! The cluster knows nothing of the hub. Two traits, both defined here, are the whole
//! contract: the hub asks the cluster questions and hands it publishes through
//! [`ClusterView`], and the cluster calls back into this node through [`LocalNode`], which the
//! hub implements and [`Cluster::start`] receives. So `hub` depends on `cluster` and never the
//! reverse; the wire types they exchange ([`message`]) live here too.

pub mod broker;
pub mod message;
mod replicas;
mod runtime;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::value::RawValue;

pub use broker::{Broker, BrokerEvent};
pub use message::{Body, Change, ChannelShare, Envelope, MemberShare, NodeState, RemotePublish};
pub use runtime::{BARRIER_TIMEOUT, Cluster};

/// Cluster tunables.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://...` or `nats://...`.
    pub url: String,
    /// This node's name; unique per process.
    pub node_id: String,
    /// Keeps several clusters apart on one broker.
    pub namespace: String,
    pub heartbeat: Duration,
    /// A node silent this long is considered dead and its state dropped.
    pub node_timeout: Duration,
    /// Every this many heartbeats, the whole local state is re-sent.
    pub snapshot_every: u32,
}

impl ClusterConfig {
    pub fn new(url: String) -> Self {
        Self {
            url,
            node_id: format!("{}-{}", hostname(), &uuid::Uuid::new_v4().to_string()[..8]),
            namespace: "default".into(),
            heartbeat: Duration::from_secs(1),
            node_timeout: Duration::from_secs(10),
            snapshot_every: 10,
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}

/// What the hub asks of the cluster.
///
/// The questions are synchronous: they are answered from this node's replicas of the other
/// nodes' shares, so they cost no round trip but are only as fresh as the messages received so
/// far. Call [`barrier`](Self::barrier) first when the answer must include everything the
/// other nodes had done (and told their clients) before the question was asked.
///
/// Everything this node sends — changes, publishes, terminations, barrier pings — leaves
/// through one queue, numbered, in the order the calls were made, and every other node
/// processes it in that order.
#[async_trait]
pub trait ClusterView: Send + Sync {
    /// Tells the other nodes that this node's share of the cluster state changed.
    ///
    /// Fire and forget, ordered with everything else this node sends. Each message is
    /// delivered at most once, but the replicas it feeds are eventually consistent: a node
    /// that sees a gap in this node's numbers asks for a snapshot, and every node re-sends its
    /// whole share every few heartbeats and after its broker connection comes back.
    fn changed(&self, change: Change);

    /// Whether a socket on another node is a presence member of `channel` as `user_id`.
    /// From the replicas.
    fn remote_user_present(&self, app: &str, channel: &str, user_id: &str) -> bool;

    /// Whether a socket on another node is signed in as `user_id`. From the replicas.
    fn remote_user_signed_in(&self, app: &str, user_id: &str) -> bool;

    /// How many sockets on other nodes are subscribed to `channel`. From the replicas.
    fn remote_subscriptions(&self, app: &str, channel: &str) -> i64;

    /// Presence members on other nodes: user id → (user_info, channel_data) as JSON text.
    /// From the replicas; a user with sockets on several other nodes appears once.
    fn remote_members(&self, app: &str, channel: &str) -> BTreeMap<String, (String, String)>;

    /// Channels with subscribers on other nodes: name → subscriptions. From the replicas.
    fn remote_channels(&self, app: &str) -> HashMap<String, i64>;

    /// Hands a publish to every other node, which delivers it to its own sockets.
    ///
    /// Ordered with everything else this node sends, so it cannot overtake a subscription
    /// change made before it. Resolves once the broker took it (Redis answered the `PUBLISH`;
    /// NATS queued it on its connection): a client told "published" can count on the message
    /// being on its way to every node. At most once: a node that is not connected to the
    /// broker at that moment never gets it (nothing is replayed), and no node gets it twice.
    async fn publish(&self, publish: RemotePublish);

    /// Asks every other node to close its sockets signed in as `user_id` in `app`. Fire and
    /// forget, at most once, ordered with everything else this node sends.
    fn terminate(&self, app: &str, user_id: &str);

    /// Resolves once every other node has answered a ping sent now, or after
    /// [`BARRIER_TIMEOUT`]. An answer follows everything its node sent before it saw the ping,
    /// and the ping follows everything this node sent before it; so afterwards this node's
    /// replicas hold every change the others had made before the call (a member a client was
    /// told about, a subscription that was confirmed), and the others have processed every
    /// publish and change this node sent before it. Free when there are no other nodes.
    /// Best effort: a node that does not answer in time is not waited for.
    async fn barrier(&self);
}

/// What the cluster asks of, and tells, this node. The hub implements it; the cluster receives
/// it at [`Cluster::start`] and calls it from its receive loop and housekeeping task, one call
/// at a time, in the order the messages that cause them arrived (the way centrifuge's broker
/// calls its node through an event-handler interface).
///
/// Implementations only touch memory and queue frames: they must not block, or every
/// cluster message behind them waits. A call about an app this node has no live state for
/// is a no-op.
#[async_trait]
pub trait LocalNode: Send + Sync + 'static {
    /// This node's whole share of the cluster state, for a snapshot.
    fn share(&self) -> NodeState;

    /// Delivers another node's publish to this node's sockets (already validated, stored and
    /// recorded for offline delivery by the node it was published on). Asynchronous only
    /// because an app may have to be loaded to keep a cache channel's last event.
    async fn deliver(&self, publish: RemotePublish);

    /// Whether one of this node's sockets is a presence member of `channel` as `user_id`.
    fn has_member(&self, app: &str, channel: &str, user_id: &str) -> bool;

    /// Whether one of this node's sockets is signed in as `user_id`.
    fn has_signed_in(&self, app: &str, user_id: &str) -> bool;

    /// Another node made `user_id` join (`added`) or leave the cluster's members of
    /// `channel`: tell this node's subscribers.
    fn member_changed(
        &self,
        app: &str,
        channel: &str,
        added: bool,
        user_id: &str,
        user_info: &RawValue,
        channel_data: &RawValue,
    );

    /// Another node made `user_id` come online or go offline cluster-wide: tell this node's
    /// sockets watching them.
    fn user_changed(&self, app: &str, user_id: &str, online: bool);

    /// Another node's subscription count of `channel` changed (for subscription counting).
    fn subscriptions_changed(&self, app: &str, channel: &str);

    /// Closes this node's sockets signed in as `user_id` (another node's
    /// `terminate_connections`).
    fn terminate(&self, app: &str, user_id: &str);
}
