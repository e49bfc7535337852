//! The app model: a tenant's credentials and settings, as every layer sees them.
//!
//! Kept apart from [`crate::registry`] (which finds apps) so the store can read and write apps
//! without depending on the code that looks them up.

use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::clock::now_unix;

/// Per-app settings. Every field has a default so settings written by an older version (or a
/// partial TOML table) still load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AppSettings {
    /// Whether sockets may send `client-*` events.
    pub client_events: bool,
    /// Most simultaneous connections; `None` means no limit.
    pub max_connections: Option<u32>,
    /// Largest event `data`, in bytes.
    pub max_payload_bytes: usize,
    /// Most members in one presence channel.
    pub max_presence_members: usize,
    /// Largest presence `user_info`, in bytes.
    pub max_presence_user_info_bytes: usize,
    /// Longest presence user id.
    pub max_presence_user_id_len: usize,
    /// Most client events per second per connection.
    pub client_event_rate: u32,
    /// Accept Pushi's older channel signature, which does not cover `channel_data`.
    /// Only for apps migrating from Pushi.
    pub legacy_auth: bool,
    /// Pusher's subscription counting: tell a channel's subscribers (and the webhooks) how
    /// many sockets are subscribed whenever that changes. Not for presence channels, which
    /// have member events instead.
    pub subscription_count: bool,
    /// Pusher-style app webhooks (channel and member events, client events, cache misses,
    /// subscription counts).
    pub webhooks: Vec<WebhookConfig>,
    /// Offline delivery credentials (Web Push, e-mail, Apple push).
    #[serde(flatten)]
    pub delivery: DeliverySettings,
}

/// One Pusher-style webhook endpoint of an app.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WebhookConfig {
    pub url: String,
    /// Which events to send (`channel_occupied`, `channel_vacated`, `member_added`,
    /// `member_removed`, `client_event`, `cache_miss`, `subscription_count`); empty means all.
    #[serde(default)]
    pub event_types: Vec<String>,
}

/// Per-app credentials for offline delivery. Everything here but the flags is secret and is
/// never shown by the HTTP API.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct DeliverySettings {
    /// VAPID private key: PEM, or the raw 32-byte P-256 scalar in base64url.
    pub vapid_key: Option<String>,
    /// VAPID contact (`mailto:` is added if missing).
    pub vapid_email: Option<String>,
    /// SMTP server for this app: `smtp[s]://user:password@host:port?sender=addr`.
    pub smtp_url: Option<String>,
    /// APNs token auth: the `.p8` key (PEM), its key id, the team id and the topic (bundle id).
    pub apn_auth_key: Option<String>,
    pub apn_key_id: Option<String>,
    pub apn_team_id: Option<String>,
    pub apn_topic: Option<String>,
    /// APNs certificate auth: client certificate and its key (PEM).
    pub apn_cer: Option<String>,
    pub apn_key: Option<String>,
    /// Use Apple's sandbox endpoint.
    pub apn_sandbox: bool,
    /// Override the APNs base URL (for tests and proxies).
    pub apn_url: Option<String>,
}

impl AppSettings {
    /// The settings as the HTTP API may show them: delivery secrets reduced to whether they
    /// are set.
    pub fn public_view(&self) -> serde_json::Value {
        let d = &self.delivery;
        serde_json::json!({
            "client_events": self.client_events,
            "max_connections": self.max_connections,
            "max_payload_bytes": self.max_payload_bytes,
            "max_presence_members": self.max_presence_members,
            "max_presence_user_info_bytes": self.max_presence_user_info_bytes,
            "max_presence_user_id_len": self.max_presence_user_id_len,
            "client_event_rate": self.client_event_rate,
            "legacy_auth": self.legacy_auth,
            "subscription_count": self.subscription_count,
            "webhooks": self.webhooks,
            "vapid_key": d.vapid_key.is_some(),
            "vapid_email": d.vapid_email,
            "smtp_url": d.smtp_url.is_some(),
            "apn_auth_key": d.apn_auth_key.is_some(),
            "apn_key_id": d.apn_key_id,
            "apn_team_id": d.apn_team_id,
            "apn_topic": d.apn_topic,
            "apn_cer": d.apn_cer.is_some(),
            "apn_key": d.apn_key.is_some(),
            "apn_sandbox": d.apn_sandbox,
            "apn_url": d.apn_url,
        })
    }
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            client_events: true,
            max_connections: None,
            max_payload_bytes: 10 * 1024,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_presence_user_id_len: 128,
            client_event_rate: 10,
            legacy_auth: false,
            subscription_count: false,
            webhooks: Vec::new(),
            delivery: DeliverySettings::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct App {
    /// Numeric string: the PyPI `pusher` SDK refuses other ids.
    pub id: String,
    pub key: String,
    pub secret: String,
    pub name: String,
    /// Pushi's 64-hex identifier of the app.
    pub ident: String,
    pub enabled: bool,
    pub settings: AppSettings,
    pub description: Option<String>,
    pub created: i64,
    pub modified: i64,
}

/// 64 lowercase hex characters from the OS random generator: Pushi's recipe for idents, keys
/// and secrets (Pushi hashes a random UUID; 32 random bytes are at least as strong).
pub fn random_hex64() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

/// What creating an app needs; the rest is generated.
#[derive(Debug, Clone, Default)]
pub struct NewApp {
    pub name: String,
    pub settings: AppSettings,
    pub description: Option<String>,
}

impl NewApp {
    /// Fills in generated credentials. The numeric id is assigned by the store.
    pub fn into_app(self) -> App {
        let now = now_unix();
        App {
            id: String::new(),
            key: random_hex64(),
            secret: random_hex64(),
            ident: random_hex64(),
            name: self.name,
            enabled: true,
            settings: self.settings,
            description: self.description,
            created: now,
            modified: now,
        }
    }
}
