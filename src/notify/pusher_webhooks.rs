//! Pusher-style app webhooks: `channel_occupied`, `channel_vacated`, `member_added`,
//! `member_removed`, `client_event` and `cache_miss`, sent to each URL an app configures.
//!
//! The hub reports what happened through a channel ([`HookSender`]) without waiting. The
//! [`Batcher`] groups events per app for a moment and records one signed
//! `{"time_ms", "events"}` body per webhook URL in the outbox, so webhooks are retried and
//! survive restarts like every other delivery. `channel_vacated` and `member_removed` are held
//! for a few seconds: if the channel is occupied again (or the member comes back) in that time,
//! neither event is sent, so a page reload does not look like a leave and a join.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::outbound::OutboundClient;
use super::outbox::Outbox;
use super::payload::{self, PusherWebhookPayload};
use super::{Adapter, DeliveryError, NotifyConfig, classify_status, transport_error};
use crate::app::App;
use crate::registry::AppRegistry;
use crate::store::{DeliveryKind, DeliveryRecord, NewDelivery};

/// Something that happened in an app that webhooks may report.
#[derive(Debug, Clone, PartialEq)]
pub enum HookEvent {
    ChannelOccupied {
        channel: String,
    },
    ChannelVacated {
        channel: String,
    },
    MemberAdded {
        channel: String,
        user_id: String,
    },
    MemberRemoved {
        channel: String,
        user_id: String,
    },
    ClientEvent {
        channel: String,
        event: String,
        data: String,
        socket_id: String,
        user_id: Option<String>,
    },
    CacheMiss {
        channel: String,
    },
    SubscriptionCount {
        channel: String,
        subscription_count: u64,
    },
}

impl HookEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::ChannelOccupied { .. } => "channel_occupied",
            Self::ChannelVacated { .. } => "channel_vacated",
            Self::MemberAdded { .. } => "member_added",
            Self::MemberRemoved { .. } => "member_removed",
            Self::ClientEvent { .. } => "client_event",
            Self::CacheMiss { .. } => "cache_miss",
            Self::SubscriptionCount { .. } => "subscription_count",
        }
    }

    /// The event as Pusher's webhook body lists it.
    pub fn to_json(&self) -> Value {
        match self {
            Self::ChannelOccupied { channel }
            | Self::ChannelVacated { channel }
            | Self::CacheMiss { channel } => json!({"name": self.name(), "channel": channel}),
            Self::MemberAdded { channel, user_id } | Self::MemberRemoved { channel, user_id } => {
                json!({"name": self.name(), "channel": channel, "user_id": user_id})
            }
            Self::SubscriptionCount {
                channel,
                subscription_count,
            } => json!({
                "name": self.name(),
                "channel": channel,
                "subscription_count": subscription_count,
            }),
            Self::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user_id,
            } => {
                let mut v = json!({
                    "name": "client_event",
                    "channel": channel,
                    "event": event,
                    "data": data,
                    "socket_id": socket_id,
                });
                if let Some(user_id) = user_id {
                    v["user_id"] = json!(user_id);
                }
                v
            }
        }
    }

    /// For events held to absorb reconnects: what identifies them, and whether `self` is
    /// the event that cancels a held one (`true`) or the held kind (`false`).
    fn hold_key(&self) -> Option<(String, bool)> {
        match self {
            Self::ChannelVacated { channel } => Some((format!("c\u{1f}{channel}"), false)),
            Self::ChannelOccupied { channel } => Some((format!("c\u{1f}{channel}"), true)),
            Self::MemberRemoved { channel, user_id } => {
                Some((format!("m\u{1f}{channel}\u{1f}{user_id}"), false))
            }
            Self::MemberAdded { channel, user_id } => {
                Some((format!("m\u{1f}{channel}\u{1f}{user_id}"), true))
            }
            _ => None,
        }
    }
}

/// Where the hub reports events: app id and event. Sending never blocks.
pub type HookSender = mpsc::UnboundedSender<(String, HookEvent)>;

/// How often ready events are flushed into the outbox.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

pub struct Batcher {
    apps: Arc<AppRegistry>,
    outbox: Arc<Outbox>,
    hold: Duration,
}

impl Batcher {
    pub fn new(apps: Arc<AppRegistry>, outbox: Arc<Outbox>, hold: Duration) -> Self {
        Self { apps, outbox, hold }
    }

    pub async fn run(
        self,
        mut events: mpsc::UnboundedReceiver<(String, HookEvent)>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut held: HashMap<(String, String), (HookEvent, Instant)> = HashMap::new();
        let mut ready: HashMap<String, Vec<HookEvent>> = HashMap::new();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                received = events.recv() => {
                    let Some((app_id, event)) = received else { break };
                    self.accept(&mut held, &mut ready, app_id, event);
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let due: Vec<_> = held
                        .iter()
                        .filter(|(_, (_, deadline))| *deadline <= now)
                        .map(|(k, _)| k.clone())
                        .collect();
                    for key in due {
                        if let Some((event, _)) = held.remove(&key) {
                            ready.entry(key.0).or_default().push(event);
                        }
                    }
                    for (app_id, events) in ready.drain() {
                        self.flush(&app_id, events).await;
                    }
                }
                _ = stop.changed() => break,
            }
        }
        // Shutting down: what is held or ready still goes to the outbox.
        for ((app_id, _), (event, _)) in held.drain() {
            ready.entry(app_id).or_default().push(event);
        }
        for (app_id, events) in ready.drain() {
            self.flush(&app_id, events).await;
        }
    }

    fn accept(
        &self,
        held: &mut HashMap<(String, String), (HookEvent, Instant)>,
        ready: &mut HashMap<String, Vec<HookEvent>>,
        app_id: String,
        event: HookEvent,
    ) {
        match event.hold_key() {
            Some((key, true)) => {
                // A join right after a held leave: nothing changed, report neither.
                if held.remove(&(app_id.clone(), key)).is_none() {
                    ready.entry(app_id).or_default().push(event);
                }
            }
            Some((key, false)) => {
                held.insert((app_id, key), (event, Instant::now() + self.hold));
            }
            None => ready.entry(app_id).or_default().push(event),
        }
    }

    /// Records one body per configured webhook URL, filtered by its event types.
    async fn flush(&self, app_id: &str, events: Vec<HookEvent>) {
        let app = match self.apps.by_id(app_id).await {
            Ok(Some(app)) => app,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, app_id, "cannot load app for webhooks; events dropped");
                return;
            }
        };
        let time_ms = crate::clock::now_millis();
        let mut deliveries = Vec::new();
        for hook in &app.settings.webhooks {
            let selected: Vec<Value> = events
                .iter()
                .filter(|e| {
                    hook.event_types.is_empty() || hook.event_types.iter().any(|t| t == e.name())
                })
                .map(HookEvent::to_json)
                .collect();
            if selected.is_empty() {
                continue;
            }
            let body = json!({"time_ms": time_ms, "events": selected}).to_string();
            deliveries.push(NewDelivery {
                kind: DeliveryKind::PusherWebhook,
                target: hook.url.clone(),
                payload: payload::to_json(&PusherWebhookPayload {
                    url: hook.url.clone(),
                    body,
                }),
            });
        }
        if let Err(e) = self.outbox.enqueue(app_id, &deliveries).await {
            tracing::error!(error = %e, app_id, "cannot record webhooks in the outbox");
        }
    }
}

/// Sends a recorded webhook body, signed with the app's secret as Pusher does, to a URL that
/// passes the [`outbound`](super::outbound) policy.
pub struct PusherWebhookAdapter {
    client: OutboundClient,
}

impl PusherWebhookAdapter {
    pub fn new(config: &NotifyConfig) -> Self {
        Self {
            client: OutboundClient::new(config.outbound_policy(), config.request_timeout),
        }
    }
}

#[async_trait]
impl Adapter for PusherWebhookAdapter {
    async fn deliver(&self, app: &App, delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        let hook: PusherWebhookPayload = payload::parse(&delivery.payload)?;
        let signature = crate::auth::sign(&app.secret, &hook.body);
        let response = self
            .client
            .request(reqwest::Method::POST, &hook.url)?
            .header("content-type", "application/json")
            .header("x-pusher-key", &app.key)
            .header("x-pusher-signature", signature)
            .header(super::webhook::DELIVERY_HEADER, &delivery.delivery_id)
            .body(hook.body)
            .send()
            .await
            .map_err(transport_error)?;
        classify_status(response.status())
    }
}
