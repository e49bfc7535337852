//! The transport between nodes: a narrow trait, and one implementation per engine.
//!
//! A broker only moves opaque messages to every node and says whether it is connected; what
//! the messages mean lives in [`super`]. So Redis and NATS are swappable without touching the
//! hub, and each can reconnect on its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

/// What the receiving side reports.
#[derive(Debug)]
pub enum BrokerEvent {
    Message(Vec<u8>),
    /// (Re)connected: the cluster re-announces this node's state.
    Connected,
    Disconnected,
}

/// Moves opaque messages between nodes.
///
/// The guarantees are those of plain pub/sub, and the cluster is built on no more than this:
/// each message reaches every node subscribed at that moment at most once, messages from one
/// node reach each receiver in the order they were published, and nothing is stored for a node
/// that was away. What is lost is made up for above the broker (sequence numbers, snapshots).
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Sends one message to every node, this one included.
    ///
    /// `Ok` once the engine took it: Redis answered the `PUBLISH`, NATS queued it on its
    /// connection (written out asynchronously, still in order). At most once: a node not
    /// subscribed at that moment misses it, and a failed send is not retried. Messages
    /// published by one node arrive at each receiver in the order they were published.
    async fn publish(&self, payload: Vec<u8>) -> Result<(), String>;

    /// Sends several messages, in order, with the guarantees of [`publish`](Self::publish);
    /// engines that can pipeline do it in one round trip. On error, any prefix of them may
    /// have been sent.
    async fn publish_all(&self, payloads: Vec<Vec<u8>>) -> Result<(), String> {
        for payload in payloads {
            self.publish(payload).await?;
        }
        Ok(())
    }

    /// Receives every node's messages until `stop`, reconnecting as needed, and reports them
    /// in the order they arrived. [`BrokerEvent::Connected`] follows every (re)connection and
    /// [`BrokerEvent::Disconnected`] every loss; messages published while disconnected are
    /// gone, so `Connected` is the cluster's cue to exchange snapshots.
    async fn receive(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<BrokerEvent>,
        stop: watch::Receiver<bool>,
    );

    /// Whether the receiving side is connected now (for readiness checks); no promise about
    /// the next message.
    fn connected(&self) -> bool;

    /// For logs: the URL without credentials.
    fn describe(&self) -> String;
}

/// Opens the broker a cluster URL names: `redis://...` or `nats://...`.
pub async fn open(url: &str, namespace: &str) -> Result<Arc<dyn Broker>, String> {
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(RedisBroker::new(url, namespace)?))
    } else if url.starts_with("nats://") || url.starts_with("tls://") {
        Ok(Arc::new(NatsBroker::connect(url, namespace).await?))
    } else {
        Err(format!(
            "unsupported cluster URL {url:?}: use redis://HOST:PORT or nats://HOST:PORT"
        ))
    }
}

/// How often an idle Redis subscription checks that its server is still there.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Delay between reconnection attempts, doubling up to this.
const MAX_RETRY: Duration = Duration::from_secs(2);

/// Redis pub/sub on one channel per namespace.
pub struct RedisBroker {
    client: redis::Client,
    channel: String,
    publisher: tokio::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    connected: AtomicBool,
    url: String,
}

impl RedisBroker {
    fn new(url: &str, namespace: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
        Ok(Self {
            client,
            channel: format!("pushi:cluster:{namespace}"),
            publisher: tokio::sync::Mutex::new(None),
            connected: AtomicBool::new(false),
            url: redact(url),
        })
    }
}

#[async_trait]
impl Broker for RedisBroker {
    async fn publish(&self, payload: Vec<u8>) -> Result<(), String> {
        self.publish_all(vec![payload]).await
    }

    async fn publish_all(&self, payloads: Vec<Vec<u8>>) -> Result<(), String> {
        let mut slot = self.publisher.lock().await;
        if slot.is_none() {
            let conn = tokio::time::timeout(
                Duration::from_secs(2),
                self.client.get_multiplexed_async_connection(),
            )
            .await
            .map_err(|_| "Redis connect timed out".to_owned())?
            .map_err(|e| format!("Redis connect failed: {e}"))?;
            *slot = Some(conn);
        }
        let Some(conn) = slot.as_mut() else {
            return Err("no Redis connection".into());
        };
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(payload).ignore();
        }
        let result: redis::RedisResult<()> = pipe.query_async(conn).await;
        if let Err(e) = result {
            // Reconnect on the next publish; `connected` belongs to the subscription, which
            // notices an outage on its own.
            *slot = None;
            return Err(format!("Redis publish failed: {e}"));
        }
        Ok(())
    }

    async fn receive(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<BrokerEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut retry = Duration::from_millis(100);
        while !*stop.borrow() {
            let session = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            match session.await {
                Ok(pubsub) => {
                    retry = Duration::from_millis(100);
                    self.connected.store(true, Ordering::Release);
                    tracing::info!(broker = %self.url, "cluster broker connected");
                    let _ = events.send(BrokerEvent::Connected);
                    let (mut sink, mut stream) = pubsub.split();
                    // A dead server does not always end the stream: ping it to find out.
                    let mut probe = tokio::time::interval(PROBE_EVERY);
                    probe.tick().await;
                    loop {
                        tokio::select! {
                            msg = stream.next() => match msg {
                                Some(msg) => {
                                    let _ = events.send(BrokerEvent::Message(msg.get_payload_bytes().to_vec()));
                                }
                                None => break,
                            },
                            _ = probe.tick() => {
                                let pong = tokio::time::timeout(PROBE_EVERY, sink.ping::<redis::Value>()).await;
                                if !matches!(pong, Ok(Ok(_))) {
                                    break;
                                }
                            }
                            _ = stop.changed() => return,
                        }
                    }
                    self.connected.store(false, Ordering::Release);
                    tracing::warn!(broker = %self.url, "cluster broker connection lost; reconnecting");
                    let _ = events.send(BrokerEvent::Disconnected);
                }
                Err(e) => {
                    self.connected.store(false, Ordering::Release);
                    tracing::warn!(broker = %self.url, error = %e, "cannot reach the cluster broker; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stop.changed() => return,
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// NATS core subjects: one subject per namespace. The client reconnects by itself; its
/// events tell us when.
pub struct NatsBroker {
    client: async_nats::Client,
    subject: String,
    url: String,
    events: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<async_nats::Event>>>,
}

impl NatsBroker {
    async fn connect(url: &str, namespace: &str) -> Result<Self, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(url)
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))?;
        Ok(Self {
            client,
            subject: format!("pushi.cluster.{namespace}"),
            url: redact(url),
            events: tokio::sync::Mutex::new(Some(rx)),
        })
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn publish(&self, payload: Vec<u8>) -> Result<(), String> {
        self.client
            .publish(self.subject.clone(), payload.into())
            .await
            .map_err(|e| format!("NATS publish failed: {e}"))
    }

    async fn receive(
        self: Arc<Self>,
        events: mpsc::UnboundedSender<BrokerEvent>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut subscriber = loop {
            match self.client.subscribe(self.subject.clone()).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(broker = %self.url, error = %e, "cannot subscribe on NATS; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        let mut states = self.events.lock().await.take();
        if self.connected() {
            tracing::info!(broker = %self.url, "cluster broker connected");
            let _ = events.send(BrokerEvent::Connected);
        }
        loop {
            tokio::select! {
                msg = subscriber.next() => match msg {
                    Some(msg) => {
                        let _ = events.send(BrokerEvent::Message(msg.payload.to_vec()));
                    }
                    None => return,
                },
                event = async {
                    match states.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => match event {
                    Some(async_nats::Event::Connected) => {
                        tracing::info!(broker = %self.url, "cluster broker reconnected");
                        let _ = events.send(BrokerEvent::Connected);
                    }
                    Some(async_nats::Event::Disconnected) => {
                        tracing::warn!(broker = %self.url, "cluster broker connection lost; reconnecting");
                        let _ = events.send(BrokerEvent::Disconnected);
                    }
                    Some(_) => {}
                    None => states = None,
                },
                _ = stop.changed() => return,
            }
        }
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

/// A URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}
