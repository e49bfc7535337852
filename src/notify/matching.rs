//! Which targets a publish reaches, and what each of them is sent.
//!
//! A target subscribed to channel C receives events published on C. A target subscribed to
//! `personal-{user}` receives the events of every channel that user has a subscription to
//! (Pushi's personal aliases). Each target gets at most one delivery per publish, for the
//! first of the publish's channels that matches it.
//!
//! Targets are read from the store once per app and kept for a few seconds, so apps without
//! targets (the common case) pay nothing per publish, and targets created on another node are
//! picked up within [`INDEX_TTL`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::NotifyConfig;
use super::payload::{self, ApnPayload, EmailPayload, WebPayload, WebPushPayload};
use crate::registry::AppRegistry;
use crate::store::{DeliveryKind, NewDelivery, StoreError, TargetKind, TargetRecord};

/// How long a loaded target index is trusted.
pub const INDEX_TTL: Duration = Duration::from_secs(5);

/// One app's targets by channel.
struct TargetIndex {
    loaded: Instant,
    by_channel: HashMap<String, Vec<TargetRecord>>,
    has_personal: bool,
}

/// Finds targets for publishes and records their deliveries in the outbox.
pub struct Notifier {
    apps: Arc<AppRegistry>,
    pub config: NotifyConfig,
    wake: Arc<Notify>,
    indexes: DashMap<String, Arc<TargetIndex>>,
}

impl Notifier {
    pub fn new(apps: Arc<AppRegistry>, config: NotifyConfig, wake: Arc<Notify>) -> Self {
        Self {
            apps,
            config,
            wake,
            indexes: DashMap::new(),
        }
    }

    /// Forgets an app's cached targets after they changed on this node.
    pub fn invalidate(&self, app_id: &str) {
        self.indexes.remove(app_id);
    }

    async fn index(&self, app_id: &str) -> Result<Arc<TargetIndex>, StoreError> {
        if let Some(index) = self.indexes.get(app_id)
            && index.loaded.elapsed() < INDEX_TTL
        {
            return Ok(index.clone());
        }
        let targets = self.apps.store().all_targets(app_id).await?;
        let mut by_channel: HashMap<String, Vec<TargetRecord>> = HashMap::new();
        for t in targets {
            by_channel.entry(t.event.clone()).or_default().push(t);
        }
        let has_personal = by_channel.keys().any(|c| c.starts_with("personal-"));
        let index = Arc::new(TargetIndex {
            loaded: Instant::now(),
            by_channel,
            has_personal,
        });
        self.indexes.insert(app_id.to_owned(), index.clone());
        Ok(index)
    }

    /// Whether the app has any delivery target at all (cheap after the first call).
    pub async fn has_targets(&self, app_id: &str) -> Result<bool, StoreError> {
        Ok(self.config.enabled && !self.index(app_id).await?.by_channel.is_empty())
    }

    /// The deliveries one publish causes. `messages` holds, per channel of the publish, the
    /// channel name and the message as Pushi sends it (`channel`, `event`, `data`, extras,
    /// `mid`/`timestamp` when stored).
    pub async fn deliveries_for(
        &self,
        app_id: &str,
        messages: &[(String, Map<String, Value>)],
    ) -> Result<Vec<NewDelivery>, StoreError> {
        let index = self.index(app_id).await?;
        let mut seen: HashSet<(TargetKind, String)> = HashSet::new();
        let mut out = Vec::new();
        for (channel, message) in messages {
            let mut names = vec![channel.clone()];
            if index.has_personal {
                for user in self.apps.store().subscribers_of(app_id, channel).await? {
                    names.push(format!("personal-{user}"));
                }
            }
            for name in &names {
                for target in index.by_channel.get(name).into_iter().flatten() {
                    if seen.insert((target.kind, target.target.clone())) {
                        out.push(delivery_for(target, message));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Tells the worker there is new work.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Records deliveries in the outbox and wakes the worker.
    pub async fn enqueue(
        &self,
        app_id: &str,
        deliveries: &[NewDelivery],
    ) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.apps
            .store()
            .enqueue_deliveries(app_id, deliveries)
            .await?;
        self.wake.notify_one();
        Ok(())
    }
}

fn text(message: &Map<String, Value>, key: &str) -> Option<String> {
    match message.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// What one target is sent for one message, the way Pushi's handlers build it.
fn delivery_for(target: &TargetRecord, message: &Map<String, Value>) -> NewDelivery {
    let channel = text(message, "channel").unwrap_or_default();
    let event = text(message, "event").unwrap_or_default();
    let data = text(message, "data");
    let payload = match target.kind {
        TargetKind::Web => payload::to_json(&WebPayload {
            url: target.target.clone(),
            method: "POST".into(),
            headers: Default::default(),
            body: Some(Value::Object(message.clone())),
        }),
        TargetKind::Smtp => payload::to_json(&EmailPayload {
            to: target.target.clone(),
            subject: text(message, "subject").unwrap_or_else(|| format!("[Pushi] {event}")),
            body: text(message, "body").unwrap_or_else(|| {
                format!(
                    "Event Notification\n==================\n\nChannel: {channel}\nEvent: {event}\n\nData:\n{}\n",
                    data.clone().unwrap_or_else(|| "(no data)".into())
                )
            }),
            html: false,
            smtp: None,
        }),
        TargetKind::Apn => payload::to_json(&ApnPayload {
            token: target.target.clone(),
            message: ["apn", "push", "data"]
                .iter()
                .find_map(|k| message.get(*k).filter(|v| !v.is_null()).cloned())
                .unwrap_or(Value::String(String::new())),
            sandbox: None,
        }),
        TargetKind::WebPush => payload::to_json(&WebPushPayload {
            endpoint: target.target.clone(),
            p256dh: target.p256dh.clone().unwrap_or_default(),
            auth: target.auth.clone().unwrap_or_default(),
            payload: web_push_text(
                ["web_push", "data", "push", "message"]
                    .iter()
                    .find_map(|k| message.get(*k).filter(|v| !v.is_null())),
            ),
            vapid_key: None,
            vapid_email: None,
        }),
    };
    NewDelivery {
        kind: DeliveryKind::from(target.kind),
        target: target.target.clone(),
        payload,
    }
}

/// Pushi's Web Push body: objects as JSON, strings as they are, nothing as `{}`, anything
/// else as `{"message": "..."}`.
pub fn web_push_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "{}".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Object(_) | Value::Array(_))) => v.to_string(),
        Some(other) => serde_json::json!({"message": other.to_string()}).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kind: TargetKind, to: &str) -> TargetRecord {
        TargetRecord {
            id: 1,
            app_id: "1".into(),
            kind,
            target: to.into(),
            event: "news".into(),
            p256dh: Some("key".into()),
            auth: Some("auth".into()),
            created: 0,
        }
    }

    fn message() -> Map<String, Value> {
        serde_json::json!({"channel": "news", "event": "update", "data": "{\"title\":\"T\"}"})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn email_defaults_follow_pushi() {
        let d = delivery_for(&target(TargetKind::Smtp, "a@b.c"), &message());
        let p: EmailPayload = payload::parse(&d.payload).unwrap();
        assert_eq!(p.subject, "[Pushi] update");
        assert!(p.body.contains("Channel: news\nEvent: update"));
        assert!(p.body.contains("{\"title\":\"T\"}"));
    }

    #[test]
    fn web_push_and_apn_pick_their_keys() {
        let mut m = message();
        m.insert("web_push".into(), serde_json::json!({"title": "Push"}));
        let d = delivery_for(&target(TargetKind::WebPush, "https://push"), &m);
        let p: WebPushPayload = payload::parse(&d.payload).unwrap();
        assert_eq!(p.payload, r#"{"title":"Push"}"#);
        let d = delivery_for(&target(TargetKind::Apn, "tok"), &message());
        let p: ApnPayload = payload::parse(&d.payload).unwrap();
        assert_eq!(p.message, Value::String("{\"title\":\"T\"}".into()));
        assert_eq!(web_push_text(Some(&Value::from(3))), r#"{"message":"3"}"#);
        assert_eq!(web_push_text(None), "{}");
    }
}
