//! Delivery targets (webhook URLs, e-mail addresses, APNs device tokens, Web Push
//! endpoints, each subscribed to a channel): the rules for subscribing them, and the per-app
//! cache of them that every publish reads.
//!
//! Every change to an app's targets goes through [`TargetService`], which forgets the app's
//! cached [`TargetIndex`] right after it: subscriptions and removals over REST, and the
//! worker removing targets a receiver says are gone. So this node's next publish sees the
//! change; other nodes see it once their copy is older than [`INDEX_TTL`].
//!
//! [`INDEX_TTL`]: super::matching::INDEX_TTL

use std::sync::Arc;

use dashmap::DashMap;

use super::NotifyError;
use super::matching::TargetIndex;
use super::outbound::OutboundPolicy;
use super::web_push;
use crate::app::App;
use crate::auth;
use crate::protocol::ChannelName;
use crate::protocol::channel::NameRules;
use crate::registry::AppRegistry;
use crate::store::{NewTarget, StoreError, TargetKind, TargetRecord};

/// A request to subscribe a target to a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub target: NewTarget,
    /// `key:HMAC-SHA256(secret, "{target}:{channel}")`, needed for the channels whose
    /// WebSocket subscriptions need a signature too.
    pub signature: Option<String>,
    /// Pushi's `unsubscribe=1`: the target moves here, dropping its other subscriptions of
    /// the same kind.
    pub exclusive: bool,
}

/// One app's cached index, and how many times the app's targets changed: an index loaded
/// while they changed is not kept.
#[derive(Default)]
struct Cached {
    changes: u64,
    index: Option<Arc<TargetIndex>>,
}

pub struct TargetService {
    apps: Arc<AppRegistry>,
    cache: DashMap<String, Cached>,
    /// Where URL targets may point.
    policy: Arc<OutboundPolicy>,
}

impl TargetService {
    pub fn new(apps: Arc<AppRegistry>, policy: Arc<OutboundPolicy>) -> Self {
        Self {
            apps,
            cache: DashMap::new(),
            policy,
        }
    }

    /// Refuses a target its kind's adapter could never reach, or must not: a URL whose host
    /// is an address the [`outbound`](super::outbound) policy refuses. (A name is checked
    /// when a delivery resolves it: what it resolves to now says nothing about later.)
    pub fn check_target(&self, kind: TargetKind, target: &str) -> Result<(), NotifyError> {
        let refuse = |why: String| Err(NotifyError::Invalid(why));
        if target.len() > MAX_TARGET_LEN {
            return refuse(format!(
                "the target is longer than {MAX_TARGET_LEN} bytes ({} bytes)",
                target.len()
            ));
        }
        match kind {
            TargetKind::Web | TargetKind::WebPush => match reqwest::Url::parse(target) {
                Err(e) => refuse(format!("{target:?} is not a URL: {e}")),
                Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                    refuse(format!("{target:?} must be an http(s) URL"))
                }
                Ok(url) => self
                    .policy
                    .check_url(&url)
                    .or_else(|refused| refuse(format!("{target:?}: {refused}"))),
            },
            TargetKind::Smtp if !target.contains('@') => {
                refuse(format!("{target:?} is not an e-mail address"))
            }
            TargetKind::Apn if !target.chars().all(|c| c.is_ascii_hexdigit()) => {
                refuse(format!("APNs device token {target:?} must be hex"))
            }
            TargetKind::Smtp | TargetKind::Apn => Ok(()),
        }
    }

    /// Checks and saves a subscription and returns it (the existing record if the target
    /// was already subscribed to the channel).
    pub async fn subscribe(
        &self,
        app: &App,
        request: Subscription,
    ) -> Result<TargetRecord, NotifyError> {
        let new = &request.target;
        ChannelName::parse(&new.event, NameRules::Pushi)
            .map_err(|e| NotifyError::Invalid(e.to_string()))?;
        self.check_target(new.kind, &new.target)?;
        if new.kind == TargetKind::WebPush {
            let (Some(p256dh), Some(secret)) = (&new.p256dh, &new.auth) else {
                return Err(NotifyError::Invalid(
                    "a Web Push subscription needs the browser's p256dh key and auth secret".into(),
                ));
            };
            web_push::validate_subscription(p256dh, secret).map_err(NotifyError::Invalid)?;
        }
        if needs_signature(&new.event) {
            let message = format!("{}:{}", new.target, new.event);
            let signature = request.signature.as_deref().unwrap_or_default();
            if !auth::verify_auth_string(&app.key, &app.secret, &message, signature) {
                return Err(NotifyError::Forbidden(format!(
                    "{} is a private channel: send auth = key:HMAC-SHA256(secret, {message:?})",
                    new.event
                )));
            }
        }
        let saved = self.save(&app.id, request).await;
        // Even a failed save may have removed the target's other subscriptions.
        self.forget_index(&app.id);
        Ok(saved?)
    }

    async fn save(&self, app_id: &str, request: Subscription) -> Result<TargetRecord, StoreError> {
        let store = self.apps.store();
        let new = request.target;
        if request.exclusive {
            for other in store
                .list_targets(app_id, new.kind, Some(&new.target), None)
                .await?
            {
                if other.event != new.event {
                    store
                        .delete_targets(app_id, new.kind, &new.target, Some(&other.event))
                        .await?;
                }
            }
        }
        Ok(store.create_target(app_id, new).await?.0)
    }

    /// The app's targets of a kind, optionally only one target's and/or one channel's.
    pub async fn list(
        &self,
        app_id: &str,
        kind: TargetKind,
        target: Option<&str>,
        event: Option<&str>,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        self.apps
            .store()
            .list_targets(app_id, kind, target, event)
            .await
    }

    /// Removes a target's subscriptions (to every channel, or only to `event`) and returns
    /// them.
    pub async fn unsubscribe(
        &self,
        app_id: &str,
        kind: TargetKind,
        target: &str,
        event: Option<&str>,
    ) -> Result<Vec<TargetRecord>, StoreError> {
        let deleted = self
            .apps
            .store()
            .delete_targets(app_id, kind, target, event)
            .await;
        self.forget_index(app_id);
        deleted
    }

    /// The app's targets, from the cache while it is fresh.
    pub async fn index(&self, app_id: &str) -> Result<Arc<TargetIndex>, StoreError> {
        let changes = match self.cache.get(app_id) {
            Some(cached) => match &cached.index {
                Some(index) if index.is_fresh() => return Ok(index.clone()),
                _ => cached.changes,
            },
            None => 0,
        };
        let index = Arc::new(TargetIndex::new(
            self.apps.store().all_targets(app_id).await?,
        ));
        let mut cached = self.cache.entry(app_id.to_owned()).or_default();
        if cached.changes == changes {
            cached.index = Some(index.clone());
        }
        Ok(index)
    }

    fn forget_index(&self, app_id: &str) {
        let mut cached = self.cache.entry(app_id.to_owned()).or_default();
        cached.changes += 1;
        cached.index = None;
    }
}

/// Longest target (URL, e-mail address, token, endpoint) in bytes. A target is stored in one
/// unique index with its channel name (up to 1,000 bytes under Pushi's rules), and
/// PostgreSQL refuses index rows over 2,704 bytes; real targets are far shorter (push
/// endpoints are a few hundred bytes).
pub const MAX_TARGET_LEN: usize = 1_500;

/// Channels that need a signature to subscribe need one here too.
fn needs_signature(channel: &str) -> bool {
    ["private-", "presence-", "peer-", "personal-"]
        .iter()
        .any(|p| channel.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppSettings, random_hex64};
    use crate::store::Store;

    async fn service() -> (TargetService, App) {
        let store: Arc<dyn Store> = Arc::new(
            crate::store::open("sqlite::memory:")
                .await
                .expect("in-memory store"),
        );
        let app = App {
            id: "1".into(),
            key: "key".into(),
            secret: "secret".into(),
            name: "t".into(),
            ident: random_hex64(),
            enabled: true,
            settings: AppSettings::default(),
            description: None,
            created: 0,
            modified: 0,
        };
        let apps = Arc::new(AppRegistry::new(store.clone(), vec![app.clone()]));
        let policy = Arc::new(OutboundPolicy::default());
        (TargetService::new(apps, policy), app)
    }

    fn web(url: &str, channel: &str, exclusive: bool) -> Subscription {
        Subscription {
            target: NewTarget {
                kind: TargetKind::Web,
                target: url.into(),
                event: channel.into(),
                p256dh: None,
                auth: None,
            },
            signature: None,
            exclusive,
        }
    }

    /// The channels of the app's cached index that reach some target.
    async fn reached(service: &TargetService, channels: &[&str]) -> Vec<String> {
        let index = service.index("1").await.unwrap();
        let store = service.apps.store().clone();
        let reached = index.reached(store.as_ref(), "1", channels).await.unwrap();
        reached
            .iter()
            .map(|(i, _)| channels[*i].to_owned())
            .collect()
    }

    #[tokio::test]
    async fn every_change_is_in_the_cached_index_at_once() {
        let (service, app) = service().await;
        assert!(service.index("1").await.unwrap().is_empty());
        service
            .subscribe(&app, web("http://a", "news", false))
            .await
            .unwrap();
        assert_eq!(reached(&service, &["news", "sports"]).await, ["news"]);
        // `unsubscribe=1`: the target moves to the new channel.
        service
            .subscribe(&app, web("http://a", "sports", true))
            .await
            .unwrap();
        assert_eq!(reached(&service, &["news", "sports"]).await, ["sports"]);
        // As the worker removes a gone target.
        let removed = service
            .unsubscribe("1", TargetKind::Web, "http://a", None)
            .await
            .unwrap();
        assert_eq!(removed.len(), 1);
        assert!(service.index("1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_targets_and_unsigned_private_channels_are_refused() {
        let (service, app) = service().await;
        let refused = |r: Result<TargetRecord, NotifyError>| match r {
            Err(NotifyError::Invalid(m)) => format!("invalid: {m}"),
            Err(NotifyError::Forbidden(m)) => format!("forbidden: {m}"),
            other => panic!("expected a refusal, got {other:?}"),
        };
        let e = refused(service.subscribe(&app, web("ftp://a", "news", false)).await);
        assert!(e.starts_with("invalid") && e.contains("http(s)"), "{e}");
        let e = refused(
            service
                // Pushi's names take any printable text; a control character is refused.
                .subscribe(&app, web("http://a", "bad\u{1}name", false))
                .await,
        );
        assert!(e.starts_with("invalid"), "{e}");
        let e = refused(
            service
                .subscribe(&app, web("http://a", "private-x", false))
                .await,
        );
        assert!(
            e.contains(r#""http://a:private-x""#),
            "names what to sign: {e}"
        );
        let mut signed = web("http://a", "private-x", false);
        signed.signature = Some(auth::auth_string(
            &app.key,
            &app.secret,
            "http://a:private-x",
        ));
        assert!(service.subscribe(&app, signed).await.is_ok());
        let mut push = web("http://push", "news", false);
        push.target.kind = TargetKind::WebPush;
        let e = refused(service.subscribe(&app, push).await);
        assert!(e.contains("p256dh"), "{e}");
        for internal in [
            "http://127.0.0.1:8080/hook",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[::ffff:7f00:1]/",
        ] {
            let e = refused(service.subscribe(&app, web(internal, "news", false)).await);
            assert!(e.contains("only go to public addresses"), "{internal}: {e}");
        }
    }
}
