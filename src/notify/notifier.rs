//! [`Notifier`]: what the rest of the server asks of offline delivery.
//!
//! The hub asks it to record the deliveries a publish causes; the HTTP API asks it to send
//! direct messages and to manage targets ([`Notifier::targets`]). Both ways end in the same
//! place: a [`Content`] composed for each [`Recipient`], recorded in the [`Outbox`].

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::compose::{Content, Recipient};
use super::outbox::Outbox;
use super::targets::TargetService;
use super::{NotifyConfig, NotifyError};
use crate::registry::AppRegistry;
use crate::store::{DeliveryRecord, NewDelivery, StoreError};

/// How much longer than one attempt's bound a direct message waits for its first attempt.
const REPORT_GRACE: Duration = Duration::from_secs(1);

pub struct Notifier {
    config: NotifyConfig,
    apps: Arc<AppRegistry>,
    targets: Arc<TargetService>,
    outbox: Arc<Outbox>,
}

impl Notifier {
    pub fn new(
        apps: Arc<AppRegistry>,
        config: NotifyConfig,
        targets: Arc<TargetService>,
        outbox: Arc<Outbox>,
    ) -> Self {
        Self {
            config,
            apps,
            targets,
            outbox,
        }
    }

    /// Subscribing, listing and removing delivery targets.
    pub fn targets(&self) -> &TargetService {
        &self.targets
    }

    /// Whether a publish of the app can reach any target at all (cheap after the first
    /// call), so the publish path can skip composing messages for apps without targets.
    pub async fn has_targets(&self, app_id: &str) -> Result<bool, StoreError> {
        Ok(self.config.enabled && !self.targets.index(app_id).await?.is_empty())
    }

    /// Records the deliveries one publish causes. `messages` holds, per channel of the
    /// publish, the channel name and the message as Pushi sends it (`channel`, `event`,
    /// `data`, extras, `mid`/`timestamp` when stored).
    pub async fn record(
        &self,
        app_id: &str,
        messages: &[(String, Map<String, Value>)],
    ) -> Result<(), StoreError> {
        if !self.config.enabled {
            return Ok(());
        }
        let index = self.targets.index(app_id).await?;
        if index.is_empty() {
            return Ok(());
        }
        let channels: Vec<&str> = messages.iter().map(|(c, _)| c.as_str()).collect();
        let deliveries: Vec<NewDelivery> = index
            .reached(self.apps.store().as_ref(), app_id, &channels)
            .await?
            .into_iter()
            .filter_map(|(position, target)| {
                let (_, message) = messages.get(position)?;
                let content = Content::for_published(target.kind, message);
                Some(content.delivery(&Recipient::from(target)))
            })
            .collect();
        self.outbox.enqueue(app_id, &deliveries).await?;
        Ok(())
    }

    /// Refuses a direct-messaging request naming more targets than
    /// [`NotifyConfig::max_targets_per_request`], so one request cannot fan out without bound.
    pub fn check_request_size(&self, targets: usize) -> Result<(), NotifyError> {
        let max = self.config.max_targets_per_request;
        if targets > max {
            return Err(NotifyError::Invalid(format!(
                "{targets} targets in one request; at most {max} (max_targets_per_request)"
            )));
        }
        Ok(())
    }

    /// Sends one direct message to each recipient: checks it, records one delivery each and,
    /// with `wait`, waits briefly for their first attempts. Returns the deliveries as they
    /// stand, by id.
    pub async fn send(
        &self,
        app_id: &str,
        content: &Content,
        recipients: &[Recipient],
        wait: bool,
    ) -> Result<Vec<DeliveryRecord>, NotifyError> {
        self.check_request_size(recipients.len())?;
        content.check().map_err(NotifyError::Invalid)?;
        for recipient in recipients {
            self.targets
                .check_target(content.kind(), &recipient.target)?;
        }
        let deliveries: Vec<NewDelivery> = recipients.iter().map(|r| content.delivery(r)).collect();
        let recorded = self.outbox.enqueue(app_id, &deliveries).await?;
        if !wait {
            return Ok(recorded);
        }
        let timeout = self.config.request_timeout + REPORT_GRACE;
        Ok(self
            .outbox
            .first_attempts(app_id, recorded, timeout)
            .await?)
    }
}
