//! Placeholder: being written (see the offline-delivery issue).

use async_trait::async_trait;

use super::{Adapter, DeliveryError, NotifyConfig};
use crate::apps::App;
use crate::store::DeliveryRecord;

pub struct ApnsAdapter;

impl ApnsAdapter {
    pub fn new(_config: &NotifyConfig) -> Self {
        Self
    }
}

#[async_trait]
impl Adapter for ApnsAdapter {
    async fn deliver(&self, _app: &App, _delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        Err(DeliveryError::Retry("adapter not available yet".into()))
    }
}
