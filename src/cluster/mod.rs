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

pub mod broker;
pub mod message;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::RwLock;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::hub::Hub;
pub use broker::{Broker, BrokerEvent};
pub use message::{Body, Change, ChannelShare, Envelope, MemberShare, NodeState, RemotePublish};

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

/// What the hub asks of the cluster. Everything is synchronous: answers come from replicas.
pub trait ClusterView: Send + Sync {
    /// This node's share changed.
    fn changed(&self, change: Change);
    fn remote_user_present(&self, app: &str, channel: &str, user_id: &str) -> bool;
    /// Whether a socket on another node is signed in as `user_id`.
    fn remote_user_signed_in(&self, app: &str, user_id: &str) -> bool;
    fn remote_subscriptions(&self, app: &str, channel: &str) -> i64;
    /// Members on other nodes: user id → (user_info, channel_data) as JSON text.
    fn remote_members(&self, app: &str, channel: &str) -> BTreeMap<String, (String, String)>;
    /// Channels occupied on other nodes: name → (subscriptions, member user ids).
    fn remote_channels(&self, app: &str) -> HashMap<String, (i64, HashSet<String>)>;
    /// Sends a publish to the other nodes; resolves once the broker has it, so a client
    /// told "published" can count on every node receiving it.
    fn publish(&self, publish: RemotePublish) -> BoxFuture<'_, ()>;
    fn terminate(&self, app: &str, user_id: &str);
    /// Resolves once every node has processed what it sent before (see [`Cluster::barrier`]).
    fn barrier(&self) -> BoxFuture<'_, ()>;
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

struct Replica {
    state: NodeState,
    last_seen: Instant,
    seq: u64,
}

/// A message for the send loop, and who to tell once the broker took it.
type Outgoing = (Body, Option<tokio::sync::oneshot::Sender<()>>);

/// A barrier waiting for pongs: the nodes still to answer, and who to wake.
type Barrier = (HashSet<String>, tokio::sync::oneshot::Sender<()>);

/// Most messages sent in one broker round trip.
const MAX_SEND_BATCH: usize = 256;

/// How long a query waits for the other nodes to answer its barrier.
const BARRIER_TIMEOUT: Duration = Duration::from_millis(500);

pub struct Cluster {
    pub config: ClusterConfig,
    broker: Arc<dyn Broker>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// Barriers waiting for pongs: id → nodes still to answer, and who to wake.
    barriers: parking_lot::Mutex<HashMap<u64, Barrier>>,
    next_barrier: AtomicU64,
    replicas: RwLock<HashMap<String, Replica>>,
    hub: OnceLock<Weak<Hub>>,
    published: AtomicU64,
}

pub const CONNECTED: &str = "pushi_cluster_connected";
pub const NODES: &str = "pushi_cluster_nodes";
pub const BROKER_ERRORS: &str = "pushi_cluster_broker_errors_total";

impl Cluster {
    /// Connects to the broker and starts the sending, receiving and housekeeping tasks. The
    /// hub is attached afterwards ([`Cluster::attach`]): it needs the cluster to be built.
    pub async fn start(
        config: ClusterConfig,
        stop: watch::Receiver<bool>,
    ) -> Result<(Arc<Self>, Vec<JoinHandle<()>>), String> {
        let broker = broker::open(&config.url, &config.namespace).await?;
        let (outgoing, queue) = mpsc::unbounded_channel::<Outgoing>();
        let cluster = Arc::new(Self {
            config,
            broker: broker.clone(),
            outgoing,
            barriers: parking_lot::Mutex::new(HashMap::new()),
            next_barrier: AtomicU64::new(1),
            replicas: RwLock::new(HashMap::new()),
            hub: OnceLock::new(),
            published: AtomicU64::new(0),
        });
        let (events_tx, events) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(cluster.clone().send_loop(queue)),
            tokio::spawn(broker.receive(events_tx, stop.clone())),
            tokio::spawn(cluster.clone().receive_loop(events, stop.clone())),
            tokio::spawn(cluster.clone().housekeeping(stop)),
        ];
        tracing::info!(node = %cluster.config.node_id, broker = %cluster.broker.describe(), "cluster mode");
        Ok((cluster, tasks))
    }

    pub fn attach(&self, hub: &Arc<Hub>) {
        let _ = self.hub.set(Arc::downgrade(hub));
    }

    fn hub(&self) -> Option<Arc<Hub>> {
        self.hub.get().and_then(Weak::upgrade)
    }

    pub fn connected(&self) -> bool {
        self.broker.connected()
    }

    /// Live nodes other than this one.
    pub fn peers(&self) -> Vec<String> {
        let mut nodes: Vec<String> = self.replicas.read().keys().cloned().collect();
        nodes.sort();
        nodes
    }

    /// Tells the others this node is going away, so they need not wait for its timeout.
    pub async fn leave(&self) {
        let envelope = Envelope {
            node: self.config.node_id.clone(),
            seq: self.published.fetch_add(1, Ordering::AcqRel) + 1,
            body: Body::Leaving,
        };
        if let Ok(bytes) = serde_json::to_vec(&envelope) {
            let _ = self.broker.publish(bytes).await;
        }
    }

    fn send(&self, body: Body) {
        let _ = self.outgoing.send((body, None));
    }

    /// Sends `body` and waits until the broker took it (in order with everything else).
    async fn send_and_wait(&self, body: Body) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.outgoing.send((body, Some(tx))).is_ok() {
            let _ = rx.await;
        }
    }

    /// Returns once every other node has processed everything it sent before this call
    /// (bounded by [`BARRIER_TIMEOUT`]), so replicas are at least as fresh as any reply
    /// a client got from another node. Queries of cluster-wide state call this first.
    pub async fn barrier(&self) {
        let peers: HashSet<String> = self.replicas.read().keys().cloned().collect();
        if peers.is_empty() {
            return;
        }
        let id = self.next_barrier.fetch_add(1, Ordering::AcqRel);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.barriers.lock().insert(id, (peers, tx));
        self.send(Body::Ping { id });
        let _ = tokio::time::timeout(BARRIER_TIMEOUT, rx).await;
        self.barriers.lock().remove(&id);
    }

    fn pong(&self, from: &str, id: u64) {
        let mut barriers = self.barriers.lock();
        let done = match barriers.get_mut(&id) {
            Some((waiting, _)) => {
                waiting.remove(from);
                waiting.is_empty()
            }
            None => false,
        };
        if done && let Some((_, tx)) = barriers.remove(&id) {
            let _ = tx.send(());
        }
    }

    /// Sends queued messages in order, as many per round trip as are waiting.
    async fn send_loop(self: Arc<Self>, mut queue: mpsc::UnboundedReceiver<Outgoing>) {
        let mut batch = Vec::new();
        while queue.recv_many(&mut batch, MAX_SEND_BATCH).await > 0 {
            let mut payloads = Vec::with_capacity(batch.len());
            let mut acks = Vec::new();
            for (body, ack) in batch.drain(..) {
                let envelope = Envelope {
                    node: self.config.node_id.clone(),
                    seq: self.published.fetch_add(1, Ordering::AcqRel) + 1,
                    body,
                };
                // Serialised once, whatever the number of nodes.
                match serde_json::to_vec(&envelope) {
                    Ok(bytes) => payloads.push(bytes),
                    Err(e) => tracing::error!(error = %e, "cannot encode cluster message"),
                }
                acks.extend(ack);
            }
            if let Err(e) = self.broker.publish_all(payloads).await {
                // Peers notice the gap in sequence numbers and ask for a snapshot.
                metrics::counter!(BROKER_ERRORS).increment(1);
                tracing::warn!(error = %e, "cluster messages not sent");
            }
            for ack in acks {
                let _ = ack.send(());
            }
        }
    }

    async fn receive_loop(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<BrokerEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let event = tokio::select! {
                e = events.recv() => match e { Some(e) => e, None => return },
                _ = stop.changed() => return,
            };
            match event {
                BrokerEvent::Connected => {
                    metrics::gauge!(CONNECTED).set(1.0);
                    // Re-announce after an outage, and ask the others for theirs.
                    self.send_snapshot();
                    self.send(Body::SyncRequest);
                }
                BrokerEvent::Disconnected => metrics::gauge!(CONNECTED).set(0.0),
                BrokerEvent::Message(bytes) => match serde_json::from_slice::<Envelope>(&bytes) {
                    Ok(envelope) if envelope.node != self.config.node_id => {
                        self.handle(envelope).await
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "undecodable cluster message ignored"),
                },
            }
        }
    }

    async fn housekeeping(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut beats: u32 = 0;
        let mut tick = tokio::time::interval(self.config.heartbeat);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            beats = beats.wrapping_add(1);
            if beats.is_multiple_of(self.config.snapshot_every.max(1)) {
                self.send_snapshot();
            } else {
                self.send(Body::Heartbeat);
            }
            self.reap();
            metrics::gauge!(NODES).set((self.replicas.read().len() + 1) as f64);
        }
    }

    fn send_snapshot(&self) {
        if let Some(hub) = self.hub() {
            self.send(Body::Snapshot(hub.local_share()));
        }
    }

    /// Forgets nodes that stopped talking.
    fn reap(&self) {
        let timeout = self.config.node_timeout;
        let dead: Vec<String> = self
            .replicas
            .read()
            .iter()
            .filter(|(_, r)| r.last_seen.elapsed() > timeout)
            .map(|(n, _)| n.clone())
            .collect();
        for node in dead {
            tracing::warn!(node = %node, timeout_s = timeout.as_secs(), "cluster node stopped responding; dropping its state");
            self.replace(&node, None, 0);
        }
    }

    async fn handle(&self, envelope: Envelope) {
        let Envelope { node, seq, body } = envelope;
        let gap = {
            let mut replicas = self.replicas.write();
            match replicas.get_mut(&node) {
                Some(r) => {
                    r.last_seen = Instant::now();
                    let gap = seq != r.seq + 1;
                    r.seq = seq;
                    gap
                }
                None => {
                    replicas.insert(
                        node.clone(),
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
        };
        match body {
            Body::Snapshot(state) => self.replace(&node, Some(state), seq),
            // A new or out-of-step node: ask for its whole state before trusting deltas.
            _ if gap => {
                self.send(Body::SyncRequest);
                if let Body::Publish(p) = body {
                    self.deliver(p).await;
                }
            }
            Body::Publish(p) => self.deliver(p).await,
            Body::Change(change) => self.apply_change(&node, change),
            Body::Heartbeat => {}
            Body::SyncRequest => self.send_snapshot(),
            Body::Terminate { app, user_id } => {
                if let Some(state) = self.hub().and_then(|h| h.existing_state(&app)) {
                    state.terminate_local_user(&user_id);
                }
            }
            Body::Leaving => {
                tracing::info!(node = %node, "cluster node left");
                self.replace(&node, None, 0);
            }
            Body::Ping { id } => self.send(Body::Pong { id, to: node }),
            Body::Pong { id, to } => {
                if to == self.config.node_id {
                    self.pong(&node, id);
                }
            }
        }
    }

    async fn deliver(&self, publish: RemotePublish) {
        if let Some(hub) = self.hub() {
            hub.deliver_remote(publish).await;
        }
    }

    /// Whether `user_id` is a member anywhere: here or on any other node.
    fn present_anywhere(
        &self,
        hub: Option<&Arc<Hub>>,
        app: &str,
        channel: &str,
        user_id: &str,
    ) -> bool {
        self.remote_user_present(app, channel, user_id)
            || hub
                .and_then(|h| h.existing_state(app))
                .is_some_and(|s| s.local_user_present(channel, user_id))
    }

    /// Whether any socket, on this node or another, is signed in as `user_id`.
    fn signed_in_anywhere(&self, hub: Option<&Arc<Hub>>, app: &str, user_id: &str) -> bool {
        self.remote_user_signed_in(app, user_id)
            || hub
                .and_then(|h| h.existing_state(app))
                .is_some_and(|s| s.local_user_signed_in(user_id))
    }

    fn apply_change(&self, node: &str, change: Change) {
        let hub = self.hub();
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
                let was = self.signed_in_anywhere(hub.as_ref(), app, user_id);
                Some((app.clone(), user_id.clone(), was))
            }
            _ => None,
        };
        if let Change::Subscriptions { app, channel, .. } = &change
            && let Some(state) = hub.as_ref().and_then(|h| h.existing_state(app))
        {
            state.subscription_count_changed(channel, false);
        }
        let before = member
            .as_ref()
            .map(|(a, c, u)| self.present_anywhere(hub.as_ref(), a, c, u));
        if let Some(r) = self.replicas.write().get_mut(node) {
            r.state.apply(&change);
        }
        if let Some((app, user_id, was)) = signed_in {
            let now = self.signed_in_anywhere(hub.as_ref(), &app, &user_id);
            if was != now
                && let Some(state) = hub.as_ref().and_then(|h| h.existing_state(&app))
            {
                state.announce_remote_user(&user_id, now);
            }
        }
        let (Some((app, channel, user_id)), Some(before)) = (member, before) else {
            return;
        };
        let after = self.present_anywhere(hub.as_ref(), &app, &channel, &user_id);
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
            announce(hub.as_ref(), &app, &channel, after, &user_id, &info, &data);
        }
    }

    /// Replaces (or, with `None`, drops) what this node knows of `node`, announcing every
    /// presence member that appears or disappears cluster-wide as a result.
    fn replace(&self, node: &str, state: Option<NodeState>, seq: u64) {
        let hub = self.hub();
        let old = {
            let replicas = self.replicas.read();
            replicas
                .get(node)
                .map(|r| r.state.clone())
                .unwrap_or_default()
        };
        let new = state.clone().unwrap_or_default();
        // Members whose presence may change: those in either version.
        let mut candidates: Vec<(String, String, String, String, String, bool)> = Vec::new();
        for (which, version) in [(false, &old), (true, &new)] {
            for (app, channels) in &version.apps {
                for (channel, share) in channels {
                    for (user, m) in &share.members {
                        candidates.push((
                            app.clone(),
                            channel.clone(),
                            user.clone(),
                            m.user_info.clone(),
                            m.channel_data.clone(),
                            which,
                        ));
                    }
                }
            }
        }
        let before: Vec<bool> = candidates
            .iter()
            .map(|(a, c, u, ..)| self.present_anywhere(hub.as_ref(), a, c, u))
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
                let was = self.signed_in_anywhere(hub.as_ref(), &app, &user);
                ((app, user), was)
            })
            .collect();
        {
            let mut replicas = self.replicas.write();
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
        notice_count_changes(hub.as_ref(), &old, &new);
        for ((app, user), was) in users_before {
            let now = self.signed_in_anywhere(hub.as_ref(), &app, &user);
            if was != now
                && let Some(state) = hub.as_ref().and_then(|h| h.existing_state(&app))
            {
                state.announce_remote_user(&user, now);
            }
        }
        let mut announced = HashSet::new();
        for ((app, channel, user, info, data, _), was) in candidates.iter().zip(before) {
            let now = self.present_anywhere(hub.as_ref(), app, channel, user);
            if was != now && announced.insert((app.clone(), channel.clone(), user.clone())) {
                announce(hub.as_ref(), app, channel, now, user, info, data);
            }
        }
    }
}

/// Subscription counting: marks every channel whose count differs between two versions of a
/// node's share (a snapshot that healed a gap, a node that died).
fn notice_count_changes(hub: Option<&Arc<Hub>>, old: &NodeState, new: &NodeState) {
    let Some(hub) = hub else { return };
    let count = |state: &NodeState, app: &str, channel: &str| {
        state
            .apps
            .get(app)
            .and_then(|channels| channels.get(channel))
            .map_or(0, |share| share.subscriptions)
    };
    for (version, other) in [(old, new), (new, old)] {
        for (app, channels) in &version.apps {
            let Some(state) = hub.existing_state(app) else {
                continue;
            };
            for (channel, share) in channels {
                if share.subscriptions != count(other, app, channel) {
                    state.subscription_count_changed(channel, false);
                }
            }
        }
    }
}

/// Tells this node's subscribers of `channel` that `user_id` joined or left the cluster.
fn announce(
    hub: Option<&Arc<Hub>>,
    app: &str,
    channel: &str,
    added: bool,
    user_id: &str,
    info: &str,
    data: &str,
) {
    let Some(state) = hub.and_then(|h| h.existing_state(app)) else {
        return;
    };
    let raw = |text: &str| RawValue::from_string(text.to_owned()).ok();
    let (Some(info), Some(data)) = (raw(info), raw(data)) else {
        return;
    };
    state.announce_remote_member(channel, added, user_id, &info, &data);
}

impl ClusterView for Cluster {
    fn changed(&self, change: Change) {
        self.send(Body::Change(change));
    }

    fn remote_user_present(&self, app: &str, channel: &str, user_id: &str) -> bool {
        self.replicas.read().values().any(|r| {
            r.state
                .channel(app, channel)
                .is_some_and(|c| c.members.contains_key(user_id))
        })
    }

    fn remote_user_signed_in(&self, app: &str, user_id: &str) -> bool {
        self.replicas
            .read()
            .values()
            .any(|r| r.state.is_signed_in(app, user_id))
    }

    fn remote_subscriptions(&self, app: &str, channel: &str) -> i64 {
        self.replicas
            .read()
            .values()
            .filter_map(|r| r.state.channel(app, channel))
            .map(|c| c.subscriptions.max(0))
            .sum()
    }

    fn remote_members(&self, app: &str, channel: &str) -> BTreeMap<String, (String, String)> {
        let mut out = BTreeMap::new();
        for r in self.replicas.read().values() {
            if let Some(c) = r.state.channel(app, channel) {
                for (user, m) in &c.members {
                    out.insert(user.clone(), (m.user_info.clone(), m.channel_data.clone()));
                }
            }
        }
        out
    }

    fn remote_channels(&self, app: &str) -> HashMap<String, (i64, HashSet<String>)> {
        let mut out: HashMap<String, (i64, HashSet<String>)> = HashMap::new();
        for r in self.replicas.read().values() {
            if let Some(channels) = r.state.apps.get(app) {
                for (name, share) in channels {
                    let entry = out.entry(name.clone()).or_default();
                    entry.0 += share.subscriptions.max(0);
                    entry.1.extend(share.members.keys().cloned());
                }
            }
        }
        out
    }

    fn publish(&self, publish: RemotePublish) -> BoxFuture<'_, ()> {
        Box::pin(self.send_and_wait(Body::Publish(publish)))
    }

    fn terminate(&self, app: &str, user_id: &str) {
        self.send(Body::Terminate {
            app: app.to_owned(),
            user_id: user_id.to_owned(),
        });
    }

    fn barrier(&self) -> BoxFuture<'_, ()> {
        Box::pin(Cluster::barrier(self))
    }
}
