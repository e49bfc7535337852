//! What the outbox stores for each kind of delivery: everything its adapter needs, so an
//! attempt after a restart sends exactly what the publish asked for.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DeliveryError;

/// A webhook request (Pushi web subscriptions and `/messaging/webhook`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebPayload {
    pub url: String,
    #[serde(default = "post")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Sent as JSON; a string is sent as it is. `None` sends no body.
    #[serde(default)]
    pub body: Option<Value>,
}

fn post() -> String {
    "POST".into()
}

/// SMTP settings given with a direct message, overriding the app's and the global ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpOverride {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub starttls: Option<bool>,
    pub sender: Option<String>,
}

/// One e-mail to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    pub to: String,
    pub subject: String,
    pub body: String,
    #[serde(default)]
    pub html: bool,
    #[serde(default)]
    pub smtp: Option<SmtpOverride>,
}

/// One Apple push notification to one device token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApnPayload {
    pub token: String,
    /// A string becomes the alert (`{"aps": {"alert": ..., "sound": "default", "badge": 0}}`);
    /// an object with `aps` is sent as it is.
    pub message: Value,
    /// Overrides the app's sandbox flag (direct messaging).
    #[serde(default)]
    pub sandbox: Option<bool>,
}

/// One Web Push message to one browser subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebPushPayload {
    pub endpoint: String,
    /// The browser's P-256 public key (base64url).
    pub p256dh: String,
    /// The browser's auth secret (base64url).
    pub auth: String,
    /// The plaintext to encrypt (usually JSON text).
    pub payload: String,
    /// Overrides of the app's VAPID key and contact (direct messaging).
    #[serde(default)]
    pub vapid_key: Option<String>,
    #[serde(default)]
    pub vapid_email: Option<String>,
}

/// A Pusher-style app webhook: the exact body to sign and send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PusherWebhookPayload {
    pub url: String,
    pub body: String,
}

/// Reads a stored payload; a payload that does not parse can never be sent.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, DeliveryError> {
    serde_json::from_str(text)
        .map_err(|e| DeliveryError::Permanent(format!("stored payload is invalid: {e}")))
}

pub fn to_json<T: Serialize>(payload: &T) -> String {
    serde_json::to_string(payload).unwrap_or_default()
}
