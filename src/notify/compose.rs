//! What a delivery carries, composed in one place for both ways deliveries start: an event
//! published on a channel a target subscribed to, and a direct message (`/messaging/*`).
//!
//! A [`Content`] is what one message says, per kind; a [`Recipient`] is who gets it. Their
//! pair becomes the [`NewDelivery`] the outbox stores, holding everything its adapter needs
//! (the [`payload`] types), so a retry after a restart sends exactly this.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::payload::{self, ApnPayload, EmailPayload, SmtpOverride, WebPayload, WebPushPayload};
use crate::store::{DeliveryKind, NewDelivery, TargetKind, TargetRecord};

/// One message, in the form its kind of target is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// An HTTP request; `body` is sent as JSON (a string as it is), `None` sends none.
    Webhook {
        method: String,
        headers: BTreeMap<String, String>,
        body: Option<Value>,
    },
    Email {
        subject: String,
        body: String,
        html: bool,
        /// SMTP settings given with a direct message, over the app's and the global ones.
        smtp: Option<SmtpOverride>,
    },
    /// A string becomes the alert; an object with `aps` is sent as it is.
    Apn {
        message: Value,
        /// Over the app's sandbox flag (direct messaging).
        sandbox: Option<bool>,
    },
    WebPush {
        /// The plaintext to encrypt (see [`web_push_text`]).
        text: String,
        /// Over the app's VAPID key and contact (direct messaging).
        vapid_key: Option<String>,
        vapid_email: Option<String>,
    },
}

/// Who receives a message: a URL, an e-mail address, a device token or a push endpoint, and
/// for Web Push the browser's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub target: String,
    /// The browser's P-256 public key (base64url); Web Push only.
    pub p256dh: Option<String>,
    /// The browser's auth secret (base64url); Web Push only.
    pub auth: Option<String>,
}

impl Recipient {
    pub fn new(target: impl Into<String>) -> Self {
        Self {
            target: target.into(),
            p256dh: None,
            auth: None,
        }
    }

    /// A browser's push subscription.
    pub fn browser(endpoint: String, p256dh: String, auth: String) -> Self {
        Self {
            target: endpoint,
            p256dh: Some(p256dh),
            auth: Some(auth),
        }
    }
}

impl From<&TargetRecord> for Recipient {
    fn from(target: &TargetRecord) -> Self {
        Self {
            target: target.target.clone(),
            p256dh: target.p256dh.clone(),
            auth: target.auth.clone(),
        }
    }
}

/// The webhook methods the webhook adapter sends.
const WEBHOOK_METHODS: [&str; 4] = ["POST", "PUT", "GET", "DELETE"];

impl Content {
    pub fn kind(&self) -> TargetKind {
        match self {
            Self::Webhook { .. } => TargetKind::Web,
            Self::Email { .. } => TargetKind::Smtp,
            Self::Apn { .. } => TargetKind::Apn,
            Self::WebPush { .. } => TargetKind::WebPush,
        }
    }

    /// What a target of `kind` subscribed to a channel is sent for a message published on
    /// it, the way Pushi's handlers build it. `message` is the message as Pushi's dialect
    /// sends it (`channel`, `event`, `data`, the request's extra keys, `mid` when stored).
    pub fn for_published(kind: TargetKind, message: &Map<String, Value>) -> Self {
        let first_of = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| message.get(*k).filter(|v| !v.is_null()))
        };
        match kind {
            TargetKind::Web => Self::Webhook {
                method: "POST".into(),
                headers: BTreeMap::new(),
                body: Some(Value::Object(message.clone())),
            },
            TargetKind::Smtp => {
                let event = text(message, "event").unwrap_or_default();
                Self::Email {
                    subject: text(message, "subject").unwrap_or_else(|| format!("[Pushi] {event}")),
                    body: text(message, "body").unwrap_or_else(|| {
                        format!(
                            "Event Notification\n==================\n\nChannel: {}\nEvent: {event}\n\nData:\n{}\n",
                            text(message, "channel").unwrap_or_default(),
                            text(message, "data").unwrap_or_else(|| "(no data)".into())
                        )
                    }),
                    html: false,
                    smtp: None,
                }
            }
            TargetKind::Apn => Self::Apn {
                message: first_of(&["apn", "push", "data"])
                    .cloned()
                    .unwrap_or(Value::String(String::new())),
                sandbox: None,
            },
            TargetKind::WebPush => Self::WebPush {
                text: web_push_text(first_of(&["web_push", "data", "push", "message"])),
                vapid_key: None,
                vapid_email: None,
            },
        }
    }

    /// Refuses what no attempt could ever send: an unsupported webhook method or a header
    /// that is not valid HTTP.
    pub fn check(&self) -> Result<(), String> {
        let Self::Webhook {
            method, headers, ..
        } = self
        else {
            return Ok(());
        };
        if !WEBHOOK_METHODS.contains(&method.as_str()) {
            return Err(format!(
                "method {method:?} is not supported; use POST, PUT, GET or DELETE"
            ));
        }
        for (name, value) in headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                return Err(format!("invalid header {name:?}"));
            }
        }
        Ok(())
    }

    /// The delivery of this content to one recipient, as the outbox stores it.
    pub fn delivery(&self, to: &Recipient) -> NewDelivery {
        let target = to.target.clone();
        let payload = match self {
            Self::Webhook {
                method,
                headers,
                body,
            } => payload::to_json(&WebPayload {
                url: target.clone(),
                method: method.clone(),
                headers: headers.clone(),
                body: body.clone(),
            }),
            Self::Email {
                subject,
                body,
                html,
                smtp,
            } => payload::to_json(&EmailPayload {
                to: target.clone(),
                subject: subject.clone(),
                body: body.clone(),
                html: *html,
                smtp: smtp.clone(),
            }),
            Self::Apn { message, sandbox } => payload::to_json(&ApnPayload {
                token: target.clone(),
                message: message.clone(),
                sandbox: *sandbox,
            }),
            Self::WebPush {
                text,
                vapid_key,
                vapid_email,
            } => payload::to_json(&WebPushPayload {
                endpoint: target.clone(),
                p256dh: to.p256dh.clone().unwrap_or_default(),
                auth: to.auth.clone().unwrap_or_default(),
                payload: text.clone(),
                vapid_key: vapid_key.clone(),
                vapid_email: vapid_email.clone(),
            }),
        };
        NewDelivery {
            kind: DeliveryKind::from(self.kind()),
            target,
            payload,
        }
    }
}

/// A message value as text: strings as they are, other JSON as JSON, null as nothing.
fn text(message: &Map<String, Value>, key: &str) -> Option<String> {
    match message.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Pushi's Web Push body: objects as JSON, strings as they are, nothing as `{}`, anything
/// else as `{"message": "..."}`.
pub fn web_push_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "{}".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
        Some(other) => json!({"message": other.to_string()}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Map<String, Value> {
        json!({"channel": "news", "event": "update", "data": "{\"title\":\"T\"}"})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn browser() -> Recipient {
        Recipient::browser("https://push".into(), "key".into(), "auth".into())
    }

    #[test]
    fn email_defaults_follow_pushi() {
        let d =
            Content::for_published(TargetKind::Smtp, &message()).delivery(&Recipient::new("a@b.c"));
        assert_eq!(d.kind, DeliveryKind::Smtp);
        let p: EmailPayload = payload::parse(&d.payload).unwrap();
        assert_eq!(p.to, "a@b.c");
        assert_eq!(p.subject, "[Pushi] update");
        assert!(p.body.contains("Channel: news\nEvent: update"));
        assert!(p.body.contains("{\"title\":\"T\"}"));
    }

    #[test]
    fn web_push_and_apn_pick_their_keys() {
        let mut m = message();
        m.insert("web_push".into(), json!({"title": "Push"}));
        let d = Content::for_published(TargetKind::WebPush, &m).delivery(&browser());
        let p: WebPushPayload = payload::parse(&d.payload).unwrap();
        assert_eq!(p.payload, r#"{"title":"Push"}"#);
        assert_eq!((p.p256dh.as_str(), p.auth.as_str()), ("key", "auth"));
        let d = Content::for_published(TargetKind::Apn, &message()).delivery(&Recipient::new("ab"));
        let p: ApnPayload = payload::parse(&d.payload).unwrap();
        assert_eq!(p.message, Value::String("{\"title\":\"T\"}".into()));
        assert_eq!(web_push_text(Some(&Value::from(3))), r#"{"message":"3"}"#);
        assert_eq!(web_push_text(None), "{}");
    }

    #[test]
    fn web_subscriptions_get_the_message_and_bad_webhooks_are_refused() {
        let content = Content::for_published(TargetKind::Web, &message());
        assert_eq!(content.check(), Ok(()));
        let p: WebPayload =
            payload::parse(&content.delivery(&Recipient::new("http://h")).payload).unwrap();
        assert_eq!((p.url.as_str(), p.method.as_str()), ("http://h", "POST"));
        assert_eq!(p.body, Some(Value::Object(message())));
        let webhook = |method: &str, header: &str| Content::Webhook {
            method: method.into(),
            headers: BTreeMap::from([(header.to_owned(), "v".to_owned())]),
            body: None,
        };
        assert!(
            webhook("PATCH", "x-ok")
                .check()
                .unwrap_err()
                .contains("PATCH")
        );
        assert!(
            webhook("PUT", "bad header")
                .check()
                .unwrap_err()
                .contains("header")
        );
    }
}
