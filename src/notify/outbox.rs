//! The way into the outbox: record deliveries, then wake the worker.
//!
//! Publishes, direct messages and app webhooks all enqueue through [`Outbox`], so a recorded
//! delivery never waits for the worker's next poll. Direct messaging can also wait a moment
//! for each delivery's first attempt, to report how it went.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::registry::AppRegistry;
use crate::store::{DeliveryRecord, DeliveryStatus, NewDelivery, StoreError};

/// How often a waiting request looks at its deliveries again.
const SETTLE_POLL: Duration = Duration::from_millis(50);

pub struct Outbox {
    apps: Arc<AppRegistry>,
    wake: Arc<Notify>,
}

impl Outbox {
    /// `wake` is what the worker waits on between polls.
    pub fn new(apps: Arc<AppRegistry>, wake: Arc<Notify>) -> Self {
        Self { apps, wake }
    }

    /// Records deliveries as pending (due now) and wakes the worker; returns the records.
    pub async fn enqueue(
        &self,
        app_id: &str,
        deliveries: &[NewDelivery],
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let recorded = self
            .apps
            .store()
            .enqueue_deliveries(app_id, deliveries)
            .await?;
        self.wake.notify_one();
        Ok(recorded)
    }

    /// Waits until every delivery has been attempted at least once (or given up), or until
    /// `timeout`; returns their latest state, by id.
    pub async fn first_attempts(
        &self,
        app_id: &str,
        recorded: Vec<DeliveryRecord>,
        timeout: Duration,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut current: BTreeMap<i64, DeliveryRecord> =
            recorded.into_iter().map(|d| (d.id, d)).collect();
        let ids: Vec<i64> = current.keys().copied().collect();
        let deadline = tokio::time::Instant::now() + timeout;
        while !ids.is_empty() && tokio::time::Instant::now() < deadline {
            let latest = self.apps.store().get_deliveries(app_id, &ids).await?;
            let settled = latest
                .iter()
                .all(|d| d.status != DeliveryStatus::Pending || d.attempts > 0);
            current.extend(latest.into_iter().map(|d| (d.id, d)));
            if settled {
                break;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
        Ok(current.into_values().collect())
    }
}
