//! The delivery worker: claims due deliveries from the outbox and attempts them.
//!
//! Each claimed delivery becomes its own task, bounded twice: by a global number of attempts
//! in flight, and by a small number per target. A delivery whose target is already busy is
//! put back for a moment instead of waiting, so one slow target never holds slots other
//! targets could use. Outcomes go back to the store: delivered, retry at a backed-off time,
//! or given up with the reason. Claims are leases, so after a crash (this node's or another's)
//! the deliveries come back on their own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use rand::RngExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::targets::TargetService;
use super::{Adapter, DeliveryError, NotifyConfig};
use crate::logs::{Throttle, clip};
use crate::registry::AppRegistry;
use crate::store::{DeliveryKind, DeliveryOutcome, DeliveryRecord, TargetKind};

/// How often the worker looks for due deliveries when nothing woke it.
const POLL: Duration = Duration::from_millis(500);
/// How often a failed attempt may be logged.
const FAILURE_LOG_PERIOD: Duration = Duration::from_secs(1);
/// How long a delivery waits when its target is busy.
const BUSY_TARGET_DEFER_MS: i64 = 250;

pub struct Worker {
    apps: Arc<AppRegistry>,
    config: NotifyConfig,
    adapters: HashMap<DeliveryKind, Arc<dyn Adapter>>,
    /// Where gone targets are removed, so publishes stop reaching them at once.
    targets: Arc<TargetService>,
    wake: Arc<Notify>,
    slots: Arc<Semaphore>,
    busy: DashMap<String, Arc<Semaphore>>,
    /// Failed attempts are logged at most once per period: tenants choose the targets, so
    /// they could otherwise choose how fast the log grows.
    failures_logged: Throttle,
}

impl Worker {
    pub fn new(
        apps: Arc<AppRegistry>,
        config: NotifyConfig,
        adapters: HashMap<DeliveryKind, Arc<dyn Adapter>>,
        targets: Arc<TargetService>,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(config.concurrency.max(1))),
            apps,
            config,
            adapters,
            targets,
            wake,
            busy: DashMap::new(),
            failures_logged: Throttle::new(FAILURE_LOG_PERIOD),
        }
    }

    /// The lease on a claimed delivery: long enough for one attempt and its bookkeeping.
    fn lease_ms(&self) -> i64 {
        (self.config.request_timeout.as_millis() as i64) * 2 + 5_000
    }

    /// Runs until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut counted = tokio::time::Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            self.claim_and_start().await;
            if counted.elapsed() >= Duration::from_secs(5) {
                counted = tokio::time::Instant::now();
                if let Ok(pending) = self.apps.store().pending_deliveries().await {
                    metrics::gauge!(crate::metrics::DELIVERIES_PENDING).set(pending as f64);
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Claims as many due deliveries as there are free slots and starts them.
    async fn claim_and_start(self: &Arc<Self>) {
        loop {
            let free = self.slots.available_permits();
            if free == 0 {
                return;
            }
            let now = crate::clock::now_millis();
            let claimed = match self
                .apps
                .store()
                .claim_deliveries(&self.config.node_id, now, self.lease_ms(), free as u32)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim deliveries");
                    return;
                }
            };
            if claimed.is_empty() {
                return;
            }
            let full_batch = claimed.len() == free;
            let now = crate::clock::now_millis();
            for delivery in claimed {
                let late_ms = now.saturating_sub(delivery.next_attempt_ms).max(0);
                metrics::histogram!(crate::metrics::OUTBOX_LAG_SECONDS)
                    .record(late_ms as f64 / 1000.0);
                let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                    self.defer(&delivery).await;
                    continue;
                };
                let worker = self.clone();
                tokio::spawn(async move { worker.attempt(delivery, slot).await });
            }
            if !full_batch {
                return;
            }
        }
    }

    /// Puts a claimed delivery back without counting an attempt.
    async fn defer(&self, delivery: &DeliveryRecord) {
        let next = crate::clock::now_millis() + BUSY_TARGET_DEFER_MS;
        let outcome = DeliveryOutcome::Deferred {
            next_attempt_ms: next,
        };
        if let Err(e) = self
            .apps
            .store()
            .finish_delivery(delivery.id, &outcome)
            .await
        {
            tracing::warn!(error = %e, id = delivery.id, "cannot defer delivery");
        }
    }

    async fn attempt(self: Arc<Self>, delivery: DeliveryRecord, _slot: OwnedSemaphorePermit) {
        let key = format!("{}\u{1f}{}", delivery.kind.as_str(), delivery.target);
        let target_slots = self
            .busy
            .entry(key.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_target_concurrency.max(1))))
            .clone();
        let Ok(_target_slot) = target_slots.try_acquire_owned() else {
            return self.defer(&delivery).await;
        };
        let result = self.send(&delivery).await;
        let outcome = self.outcome(&delivery, result).await;
        if let Err(e) = self
            .apps
            .store()
            .finish_delivery(delivery.id, &outcome)
            .await
        {
            // The lease will expire and the delivery will be attempted again: at-least-once.
            tracing::error!(error = %e, id = delivery.id, "cannot record delivery outcome");
        }
        drop(_target_slot);
        self.busy.remove_if(&key, |_, s| {
            Arc::strong_count(s) == 1 && s.available_permits() > 0
        });
    }

    async fn send(&self, delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        let adapter = self.adapters.get(&delivery.kind).ok_or_else(|| {
            DeliveryError::Permanent(format!("no adapter for {}", delivery.kind.as_str()))
        })?;
        let app = self
            .apps
            .by_id(&delivery.app_id)
            .await
            .map_err(|e| DeliveryError::Retry(format!("cannot load app: {e}")))?
            .ok_or_else(|| {
                DeliveryError::Permanent(format!("app {} no longer exists", delivery.app_id))
            })?;
        match tokio::time::timeout(self.config.request_timeout, adapter.deliver(&app, delivery))
            .await
        {
            Ok(result) => result,
            Err(_) => Err(DeliveryError::Retry(format!(
                "no answer within {} s",
                self.config.request_timeout.as_secs()
            ))),
        }
    }

    async fn outcome(
        &self,
        d: &DeliveryRecord,
        result: Result<(), DeliveryError>,
    ) -> DeliveryOutcome {
        let target = shown_target(&d.target);
        let span = (d.kind.as_str(), target.as_str(), d.delivery_id.as_str());
        match result {
            Ok(()) => {
                crate::metrics::delivery(&d.app_id, d.kind.as_str(), "delivered");
                tracing::debug!(
                    kind = span.0,
                    target = span.1,
                    delivery_id = span.2,
                    "delivered"
                );
                DeliveryOutcome::Delivered
            }
            Err(DeliveryError::Retry(error))
                if (d.attempts as u32) + 1 < self.config.max_attempts =>
            {
                crate::metrics::delivery(&d.app_id, d.kind.as_str(), "retried");
                let delay = backoff(&self.config, d.attempts as u32);
                if let Some(suppressed) = self.failures_logged.ready() {
                    tracing::info!(kind = span.0, target = span.1, delivery_id = span.2, %error, retry_in_ms = delay.as_millis() as u64, suppressed, "delivery failed; will retry");
                }
                DeliveryOutcome::Retry {
                    next_attempt_ms: crate::clock::now_millis() + delay.as_millis() as i64,
                    error,
                }
            }
            Err(DeliveryError::Gone(error)) => {
                self.forget_target(d).await;
                crate::metrics::delivery(&d.app_id, d.kind.as_str(), "failed");
                tracing::info!(kind = span.0, target = span.1, %error, "target is gone; subscription removed");
                DeliveryOutcome::Failed {
                    error: format!("target gone, subscription removed: {error}"),
                }
            }
            Err(DeliveryError::Retry(error) | DeliveryError::Permanent(error)) => {
                crate::metrics::delivery(&d.app_id, d.kind.as_str(), "failed");
                if let Some(suppressed) = self.failures_logged.ready() {
                    tracing::warn!(kind = span.0, target = span.1, delivery_id = span.2, attempts = d.attempts + 1, %error, suppressed, "delivery given up");
                }
                DeliveryOutcome::Failed { error }
            }
        }
    }

    /// A receiver said the target no longer exists: remove its subscriptions.
    async fn forget_target(&self, d: &DeliveryRecord) {
        let kind = match d.kind {
            DeliveryKind::WebPush => TargetKind::WebPush,
            DeliveryKind::Apn => TargetKind::Apn,
            DeliveryKind::Web => TargetKind::Web,
            DeliveryKind::Smtp => TargetKind::Smtp,
            DeliveryKind::PusherWebhook => return,
        };
        if let Err(e) = self
            .targets
            .unsubscribe(&d.app_id, kind, &d.target, None)
            .await
        {
            tracing::warn!(error = %e, "cannot remove gone target");
        }
    }
}

/// A target as log lines show it: a URL by its origin and (clipped) path, without user
/// information or query, which may hold the tenant's tokens; anything else clipped.
fn shown_target(target: &str) -> String {
    match reqwest::Url::parse(target) {
        Ok(url) if url.has_host() => {
            format!("{}{}", url.origin().ascii_serialization(), clip(url.path()))
        }
        _ => clip(target).into_owned(),
    }
}

/// `base × 2^attempts`, capped, then scaled by a random factor in [0.5, 1.0] (jitter) so
/// many failed deliveries do not all come back at the same instant.
pub fn backoff(config: &NotifyConfig, attempts: u32) -> Duration {
    let exp = config
        .base_backoff
        .saturating_mul(2u32.saturating_pow(attempts.min(30)));
    let capped = exp.min(config.max_backoff);
    let factor: f64 = rand::rng().random_range(0.5..=1.0);
    capped.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_targets_leave_credentials_and_queries_out() {
        assert_eq!(
            shown_target("https://user:pw@hooks.example.com:8443/h/1?token=s3cret"),
            "https://hooks.example.com:8443/h/1"
        );
        assert_eq!(shown_target("ops@example.com"), "ops@example.com");
        assert!(shown_target(&"ab".repeat(200)).len() < 100);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let config = NotifyConfig {
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            ..NotifyConfig::default()
        };
        for attempts in 0..20 {
            let d = backoff(&config, attempts);
            let full = Duration::from_secs(1u64 << attempts.min(6)).min(Duration::from_secs(60));
            assert!(d <= full && d >= full / 2, "{attempts}: {d:?}");
        }
    }
}
