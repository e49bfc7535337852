//! Reaching users who are offline: webhooks, Web Push, e-mail and Apple push, through a
//! durable outbox.
//!
//! Deliveries start in two ways, both through the [`Notifier`]: a publish reaches the targets
//! subscribed to its channels ([`matching`]), or a direct message names its recipients. Either
//! way one [`compose::Content`] per recipient becomes a delivery recorded in the [`outbox`]
//! *before* it is attempted, and the caller returns. The [`worker`] claims due deliveries,
//! hands each to the [`Adapter`] of its kind, and records the outcome: delivered, retry later
//! (exponential backoff with jitter), or given up with the reason. A restart resumes pending
//! deliveries, so delivery is at-least-once; receivers de-duplicate with the delivery id.
//!
//! Targets are changed only through the [`targets::TargetService`], which keeps the cache
//! publishes read in step with them. Pusher-style app webhooks ([`pusher_webhooks`]) use the
//! same outbox.

pub mod apns;
pub mod compose;
pub mod email;
pub mod matching;
mod notifier;
pub mod outbound;
pub mod outbox;
pub mod payload;
pub mod pusher_webhooks;
pub mod targets;
pub mod web_push;
pub mod webhook;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::app::App;
use crate::registry::AppRegistry;
use crate::store::{DeliveryKind, DeliveryRecord, StoreError};
pub use notifier::Notifier;
use outbox::Outbox;
use pusher_webhooks::HookSender;
use targets::TargetService;

/// Targets one direct-messaging request may name unless configured otherwise.
pub const DEFAULT_MAX_TARGETS_PER_REQUEST: usize = 100;

/// Tunables of offline delivery, the same for every app.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Pushi's `PUSHI_HANDLERS`: when false, events reach sockets only.
    pub enabled: bool,
    /// Attempts before a delivery is given up.
    pub max_attempts: u32,
    /// First retry delay; doubles with each attempt (with jitter) up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Bound on each attempt (connect, send and answer).
    pub request_timeout: Duration,
    /// Attempts in flight at once, in all.
    pub concurrency: usize,
    /// Attempts in flight at once to one target, so a slow target cannot take every slot.
    pub per_target_concurrency: usize,
    /// This node's name in outbox claims.
    pub node_id: String,
    /// Global SMTP server (`SMTP_URL`), used when an app has none.
    pub smtp_url: Option<String>,
    /// Seconds a push service keeps an undelivered Web Push message (`WEB_PUSH_TTL`).
    pub web_push_ttl: u64,
    /// APNs base URL override for every app (`PUSHI_APNS_URL`), for tests and proxies.
    pub apns_url: Option<String>,
    /// How long `channel_vacated` and `member_removed` webhooks wait, to absorb reconnects.
    pub webhook_hold: Duration,
    /// Addresses and ranges tenant-aimed requests may reach although they are not public
    /// (`outbound_allow`; see [`outbound`]).
    pub outbound_allow: Vec<ipnet::IpNet>,
    /// Most targets one direct-messaging request may name (`max_targets_per_request`).
    pub max_targets_per_request: usize,
}

impl NotifyConfig {
    /// The policy for requests a tenant aimed.
    pub fn outbound_policy(&self) -> Arc<outbound::OutboundPolicy> {
        Arc::new(outbound::OutboundPolicy::new(self.outbound_allow.clone()))
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_attempts: 12,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            concurrency: 64,
            per_target_concurrency: 2,
            node_id: format!("node-{}", uuid::Uuid::new_v4()),
            smtp_url: None,
            web_push_ttl: 86_400,
            apns_url: None,
            webhook_hold: Duration::from_secs(3),
            outbound_allow: Vec::new(),
            max_targets_per_request: DEFAULT_MAX_TARGETS_PER_REQUEST,
        }
    }
}

/// Offline delivery, running: the notifier the hub records deliveries through, the sender
/// app webhook events go to, and the background tasks.
pub struct Delivery {
    pub notifier: Arc<Notifier>,
    pub hooks: HookSender,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Starts the delivery worker and the webhook batcher; both stop when `stop` turns true.
pub fn start(
    apps: Arc<AppRegistry>,
    config: NotifyConfig,
    stop: watch::Receiver<bool>,
) -> Delivery {
    let wake = Arc::new(Notify::new());
    let adapters: HashMap<DeliveryKind, Arc<dyn Adapter>> = HashMap::from([
        (
            DeliveryKind::Web,
            Arc::new(webhook::WebhookAdapter::new(&config)) as Arc<dyn Adapter>,
        ),
        (
            DeliveryKind::Smtp,
            Arc::new(email::EmailAdapter::new(&config)),
        ),
        (DeliveryKind::Apn, Arc::new(apns::ApnsAdapter::new(&config))),
        (
            DeliveryKind::WebPush,
            Arc::new(web_push::WebPushAdapter::new(&config)),
        ),
        (
            DeliveryKind::PusherWebhook,
            Arc::new(pusher_webhooks::PusherWebhookAdapter::new(&config)),
        ),
    ]);
    let targets = Arc::new(TargetService::new(apps.clone(), config.outbound_policy()));
    let outbox = Arc::new(Outbox::new(apps.clone(), wake.clone()));
    let notifier = Arc::new(Notifier::new(
        apps.clone(),
        config.clone(),
        targets.clone(),
        outbox.clone(),
    ));
    let worker = Arc::new(worker::Worker::new(
        apps.clone(),
        config.clone(),
        adapters,
        targets,
        wake,
    ));
    let (hooks, events) = tokio::sync::mpsc::unbounded_channel();
    let batcher = pusher_webhooks::Batcher::new(apps, outbox, config.webhook_hold);
    let tasks = vec![
        tokio::spawn(worker.run(stop.clone())),
        tokio::spawn(batcher.run(events, stop)),
    ];
    Delivery {
        notifier,
        hooks,
        tasks,
    }
}

/// Why offline delivery refused a request (a subscription or a direct message).
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Malformed: a bad target, channel name, browser key, method or header.
    #[error("{0}")]
    Invalid(String),
    /// A subscription to a private channel without a valid signature.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again later (network error, timeout, 5xx, 429).
    #[error("{0}")]
    Retry(String),
    /// Will never work as it stands (bad payload, missing credentials, 4xx).
    #[error("{0}")]
    Permanent(String),
    /// The receiver says the target no longer exists (Web Push 404/410, APNs 410 or
    /// BadDeviceToken): give up and remove the target's subscriptions.
    #[error("{0}")]
    Gone(String),
}

/// Sends one kind of delivery. `delivery.payload` is the JSON the matching [`payload`] type
/// serialised when the delivery was recorded; `app` is the app it belongs to, for its
/// credentials. Implementations must not retry themselves: the worker does, durably.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    async fn deliver(&self, app: &App, delivery: &DeliveryRecord) -> Result<(), DeliveryError>;
}

/// Maps an HTTP status to an outcome the way most push receivers mean it. Only the status
/// line is kept: a receiver's body is never read, so nothing it says (an internal service's
/// error page, a secret) reaches a delivery record, an API answer or the log.
pub fn classify_status(status: reqwest::StatusCode) -> Result<(), DeliveryError> {
    let detail = format!("HTTP {status}");
    if status.is_success() {
        Ok(())
    } else if status.is_redirection() {
        Err(DeliveryError::Permanent(format!(
            "{detail} (redirects are not followed)"
        )))
    } else if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(DeliveryError::Retry(detail))
    } else {
        Err(DeliveryError::Permanent(detail))
    }
}

/// The longest transport error text a delivery record keeps.
const MAX_ERROR_TEXT: usize = 300;

/// A request error as an outcome: a destination the [`outbound`] policy refuses, or a request
/// that cannot be built (bad URL or header), never will be sent; everything at the transport
/// level is worth a retry. The URL is left out (it may carry the tenant's credentials, and
/// the record names the target anyway).
pub fn transport_error(e: reqwest::Error) -> DeliveryError {
    if let Some(refused) = outbound::refusal(&e) {
        return DeliveryError::Permanent(refused.to_string());
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    if e.is_builder() {
        DeliveryError::Permanent(format!("invalid request: {text}"))
    } else {
        DeliveryError::Retry(format!("request failed: {text}"))
    }
}
