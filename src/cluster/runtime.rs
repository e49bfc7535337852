//! The running cluster: one send queue, the receive loop, heartbeats and barriers.
//!
//! Every message this node sends goes through one queue and one task, which numbers it, so the
//! others receive this node's messages in the order they were sent and can tell when they
//! missed one. Received messages are handled one at a time, in order, by the receive loop;
//! what they mean for the replicas lives in [`super::replicas`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::broker::{self, Broker, BrokerEvent};
use super::message::{Body, Change, Envelope, RemotePublish};
use super::replicas::Replicas;
use super::{ClusterConfig, ClusterView, LocalNode};
use crate::metrics::{BROKER_ERRORS, CLUSTER_CONNECTED as CONNECTED, CLUSTER_NODES as NODES};

/// A message for the send loop, and who to tell once the broker took it.
type Outgoing = (Body, Option<oneshot::Sender<()>>);

/// A barrier waiting for pongs: the nodes still to answer, and who to wake.
type Barrier = (HashSet<String>, oneshot::Sender<()>);

/// Most messages sent in one broker round trip.
const MAX_SEND_BATCH: usize = 256;

/// How long a query waits for the other nodes to answer its barrier.
pub const BARRIER_TIMEOUT: Duration = Duration::from_millis(500);

pub struct Cluster {
    pub config: ClusterConfig,
    broker: Arc<dyn Broker>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// The send queue's receiving end, until [`Cluster::start`] hands it to the send loop.
    unsent: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    /// Barriers waiting for pongs, by id.
    barriers: Mutex<HashMap<u64, Barrier>>,
    next_barrier: AtomicU64,
    replicas: Replicas,
    /// This node's sequence number: how many messages it has sent.
    published: AtomicU64,
}

impl Cluster {
    /// Connects to the broker. Nothing is sent or received until [`Cluster::start`]; in
    /// between, the hub can be built around the cluster's [`ClusterView`].
    pub async fn open(config: ClusterConfig) -> Result<Arc<Self>, String> {
        let broker = broker::open(&config.url, &config.namespace).await?;
        let (outgoing, unsent) = mpsc::unbounded_channel::<Outgoing>();
        Ok(Arc::new(Self {
            config,
            broker,
            outgoing,
            unsent: Mutex::new(Some(unsent)),
            barriers: Mutex::new(HashMap::new()),
            next_barrier: AtomicU64::new(1),
            replicas: Replicas::default(),
            published: AtomicU64::new(0),
        }))
    }

    /// Registers the node the cluster reports to and starts the sending, receiving and
    /// housekeeping tasks, which run until `stop`. A second call starts nothing.
    pub fn start(
        self: &Arc<Self>,
        node: Arc<dyn LocalNode>,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let Some(unsent) = self.unsent.lock().take() else {
            tracing::error!("cluster already started");
            return Vec::new();
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let tasks = vec![
            tokio::spawn(self.clone().send_loop(unsent, stop.clone())),
            tokio::spawn(self.broker.clone().receive(events_tx, stop.clone())),
            tokio::spawn(
                self.clone()
                    .receive_loop(node.clone(), events, stop.clone()),
            ),
            tokio::spawn(self.clone().housekeeping(node, stop)),
        ];
        tracing::info!(node = %self.config.node_id, broker = %self.broker.describe(), "cluster mode");
        tasks
    }

    pub fn connected(&self) -> bool {
        self.broker.connected()
    }

    /// Live nodes other than this one.
    pub fn peers(&self) -> Vec<String> {
        self.replicas.nodes()
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
        let (tx, rx) = oneshot::channel();
        if self.outgoing.send((body, Some(tx))).is_ok() {
            let _ = rx.await;
        }
    }

    /// See [`ClusterView::barrier`].
    pub async fn barrier(&self) {
        let peers: HashSet<String> = self.replicas.nodes().into_iter().collect();
        if peers.is_empty() {
            return;
        }
        let id = self.next_barrier.fetch_add(1, Ordering::AcqRel);
        let (tx, rx) = oneshot::channel();
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
    async fn send_loop(
        self: Arc<Self>,
        mut queue: mpsc::UnboundedReceiver<Outgoing>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                received = queue.recv_many(&mut batch, MAX_SEND_BATCH) => if received == 0 {
                    return;
                },
                _ = stop.wait_for(|stopped| *stopped) => return,
            }
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
        node: Arc<dyn LocalNode>,
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
                    self.send(Body::Snapshot(node.share()));
                    self.send(Body::SyncRequest);
                }
                BrokerEvent::Disconnected => metrics::gauge!(CONNECTED).set(0.0),
                BrokerEvent::Message(bytes) => match serde_json::from_slice::<Envelope>(&bytes) {
                    Ok(envelope) if envelope.node != self.config.node_id => {
                        self.handle(&*node, envelope).await
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "undecodable cluster message ignored"),
                },
            }
        }
    }

    async fn housekeeping(
        self: Arc<Self>,
        node: Arc<dyn LocalNode>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut beats: u32 = 0;
        let mut tick = tokio::time::interval(self.config.heartbeat);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            beats = beats.wrapping_add(1);
            if beats.is_multiple_of(self.config.snapshot_every.max(1)) {
                self.send(Body::Snapshot(node.share()));
            } else {
                self.send(Body::Heartbeat);
            }
            for dead in self.replicas.silent_for(self.config.node_timeout) {
                tracing::warn!(node = %dead, timeout_s = self.config.node_timeout.as_secs(), "cluster node stopped responding; dropping its state");
                self.replicas.replace(&*node, &dead, None, 0);
            }
            metrics::gauge!(NODES).set((self.replicas.len() + 1) as f64);
        }
    }

    /// One message from another node, in the order that node sent it.
    async fn handle(&self, node: &dyn LocalNode, envelope: Envelope) {
        let Envelope {
            node: from,
            seq,
            body,
        } = envelope;
        let gap = self.replicas.heard_from(&from, seq);
        match body {
            Body::Snapshot(state) => self.replicas.replace(node, &from, Some(state), seq),
            // A new or out-of-step node: ask for its whole state before trusting deltas.
            _ if gap => {
                self.send(Body::SyncRequest);
                if let Body::Publish(p) = body {
                    node.deliver(p).await;
                }
            }
            Body::Publish(p) => node.deliver(p).await,
            Body::Change(change) => self.replicas.apply(node, &from, change),
            Body::Heartbeat => {}
            Body::SyncRequest => self.send(Body::Snapshot(node.share())),
            Body::Terminate { app, user_id } => node.terminate(&app, &user_id),
            Body::Leaving => {
                tracing::info!(node = %from, "cluster node left");
                self.replicas.replace(node, &from, None, 0);
            }
            Body::Ping { id } => self.send(Body::Pong { id, to: from }),
            Body::Pong { id, to } => {
                if to == self.config.node_id {
                    self.pong(&from, id);
                }
            }
        }
    }
}

#[async_trait]
impl ClusterView for Cluster {
    fn changed(&self, change: Change) {
        self.send(Body::Change(change));
    }

    fn remote_user_present(&self, app: &str, channel: &str, user_id: &str) -> bool {
        self.replicas.user_present(app, channel, user_id)
    }

    fn remote_user_signed_in(&self, app: &str, user_id: &str) -> bool {
        self.replicas.user_signed_in(app, user_id)
    }

    fn remote_subscriptions(&self, app: &str, channel: &str) -> i64 {
        self.replicas.subscriptions(app, channel)
    }

    fn remote_members(&self, app: &str, channel: &str) -> BTreeMap<String, (String, String)> {
        self.replicas.members(app, channel)
    }

    fn remote_channels(&self, app: &str) -> HashMap<String, i64> {
        self.replicas.channels(app)
    }

    async fn publish(&self, publish: RemotePublish) {
        self.send_and_wait(Body::Publish(publish)).await
    }

    fn terminate(&self, app: &str, user_id: &str) {
        self.send(Body::Terminate {
            app: app.to_owned(),
            user_id: user_id.to_owned(),
        });
    }

    async fn barrier(&self) {
        Cluster::barrier(self).await
    }
}
