//! The rows the store keeps besides apps, and what creating them takes.
//!
//! Every record carries the `app_id` of the app it belongs to, as text: apps declared in
//! configuration may have ids that are not numbers, so these tables cannot reference `apps`.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

/// How long a REST login token stays valid, in seconds (30 days).
pub const SESSION_TTL_SECS: i64 = 30 * 24 * 60 * 60;

/// A persisted event (Pushi's `PushiEvent`): one per channel of a publish.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// Assigned by the store; grows with every event saved.
    pub id: i64,
    pub app_id: String,
    /// The UUID sent to sockets with the message, and the key associations refer to.
    pub mid: String,
    pub channel: String,
    pub event: String,
    /// Socket id of the WebSocket client that sent it; `None` for REST and server triggers.
    pub owner_id: Option<String>,
    /// Unix seconds, with fraction, of when the event was generated.
    pub timestamp: f64,
    /// JSON text of the message snapshot; serialized as the JSON it holds, as Pushi does.
    #[serde(serialize_with = "embedded_json")]
    pub data: String,
    /// Unix seconds of when the event was saved.
    pub created: i64,
}

/// Which of an app's stored events housekeeping deletes (see [`crate::store::Store::delete_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiredEvents<'a> {
    /// Saved before this instant (unix seconds). Taken in id order, stopping at the first
    /// event still young enough: ids grow with save times, so that is where the old ones end
    /// (nodes with skewed clocks only delay a deletion by the skew).
    SavedBefore(i64),
    /// On `channel`, with ids up to and including `through_id`: the channel's excess over
    /// its per-channel limit.
    OnChannelThrough { channel: &'a str, through_id: i64 },
}

/// An event to save: everything but the id and the save time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub mid: String,
    pub channel: String,
    pub event: String,
    pub owner_id: Option<String>,
    pub timestamp: f64,
    pub data: String,
}

impl NewEvent {
    /// An event generated now, with a fresh `mid`.
    pub fn new(channel: &str, event: &str, owner_id: Option<&str>, data: String) -> Self {
        let timestamp = crate::clock::now_unix_f64();
        Self {
            mid: uuid::Uuid::new_v4().to_string(),
            channel: channel.to_owned(),
            event: event.to_owned(),
            owner_id: owner_id.map(str::to_owned),
            timestamp,
            data,
        }
    }
}

/// Writes JSON text as the value it holds, or as a plain string if it is not valid JSON.
fn embedded_json<S: Serializer>(text: &str, serializer: S) -> Result<S::Ok, S::Error> {
    match serde_json::from_str::<&RawValue>(text) {
        Ok(raw) => raw.serialize(serializer),
        Err(_) => serializer.serialize_str(text),
    }
}

/// A user's interest in a channel (Pushi's personal-channel alias `personal-{user_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriptionRecord {
    pub id: i64,
    pub app_id: String,
    pub user_id: String,
    /// The channel name.
    pub event: String,
    pub created: i64,
    pub modified: i64,
}

/// Where offline delivery sends a channel's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// A webhook URL.
    Web,
    /// An email address.
    Smtp,
    /// An Apple push token.
    Apn,
    /// A browser push endpoint, with its `p256dh` key and `auth` secret.
    WebPush,
}

impl TargetKind {
    pub const ALL: [TargetKind; 4] = [Self::Web, Self::Smtp, Self::Apn, Self::WebPush];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Smtp => "smtp",
            Self::Apn => "apn",
            Self::WebPush => "web_push",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// How many targets of one kind exist, and in how many apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCount {
    pub kind: TargetKind,
    pub targets: i64,
    pub apps: i64,
}

/// A delivery target: `target` (URL, email, token or endpoint) wants the events of `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetRecord {
    pub id: i64,
    pub app_id: String,
    pub kind: TargetKind,
    pub target: String,
    /// The channel name.
    pub event: String,
    /// Web Push only: the browser's P-256 public key.
    pub p256dh: Option<String>,
    /// Web Push only: the browser's auth secret.
    pub auth: Option<String>,
    pub created: i64,
}

/// A delivery target to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTarget {
    pub kind: TargetKind,
    pub target: String,
    pub event: String,
    pub p256dh: Option<String>,
    pub auth: Option<String>,
}

/// What kind of offline delivery a row of the outbox is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// POST of the event to a Pushi web subscription's URL.
    Web,
    Smtp,
    Apn,
    WebPush,
    /// A Pusher-style app webhook batch (`{time_ms, events}`, signed).
    PusherWebhook,
}

impl DeliveryKind {
    pub const ALL: [DeliveryKind; 5] = [
        Self::Web,
        Self::Smtp,
        Self::Apn,
        Self::WebPush,
        Self::PusherWebhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Web => "web",
            Self::Smtp => "smtp",
            Self::Apn => "apn",
            Self::WebPush => "web_push",
            Self::PusherWebhook => "pusher_webhook",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl From<TargetKind> for DeliveryKind {
    fn from(kind: TargetKind) -> Self {
        match kind {
            TargetKind::Web => Self::Web,
            TargetKind::Smtp => Self::Smtp,
            TargetKind::Apn => Self::Apn,
            TargetKind::WebPush => Self::WebPush,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// A delivery to record in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub kind: DeliveryKind,
    /// Who receives it (URL, email, token, endpoint): the unit of per-target concurrency.
    pub target: String,
    /// JSON text of everything the adapter needs to send it.
    pub payload: String,
}

/// One row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryRecord {
    pub id: i64,
    /// A UUID the receiver can use to de-duplicate retried deliveries.
    pub delivery_id: String,
    pub app_id: String,
    pub kind: DeliveryKind,
    pub target: String,
    #[serde(serialize_with = "embedded_json")]
    pub payload: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// How an attempt ended, as the outbox records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Try again at `next_attempt_ms`.
    Retry {
        next_attempt_ms: i64,
        error: String,
    },
    /// Given up; the reason is kept.
    Failed {
        error: String,
    },
    /// Not attempted (its target was busy): back in the queue at `next_attempt_ms`, without
    /// counting an attempt.
    Deferred {
        next_attempt_ms: i64,
    },
}

/// Outbox totals by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
}
