//! Webhooks: Pushi's per-channel web subscriptions and `/messaging/webhook` requests.
//!
//! Unlike the original (no timeout, no retry, response ignored), each request is bounded by
//! the delivery timeout, carries `X-Pushi-Delivery` so receivers can drop retried duplicates,
//! and its status decides the outcome: 2xx delivered, 5xx/429/timeouts retried, other 4xx
//! and 3xx (redirects are not followed) given up. The URL must pass the [`outbound`]
//! policy.
//!
//! [`outbound`]: super::outbound

use async_trait::async_trait;
use serde_json::Value;

use super::outbound::OutboundClient;
use super::payload::{self, WebPayload};
use super::{Adapter, DeliveryError, NotifyConfig, classify_status, transport_error};
use crate::app::App;
use crate::store::DeliveryRecord;

/// The header carrying the delivery id, the same on every retry of one delivery.
pub const DELIVERY_HEADER: &str = "x-pushi-delivery";

pub struct WebhookAdapter {
    client: OutboundClient,
}

impl WebhookAdapter {
    pub fn new(config: &NotifyConfig) -> Self {
        Self {
            client: OutboundClient::new(config.outbound_policy(), config.request_timeout),
        }
    }
}

#[async_trait]
impl Adapter for WebhookAdapter {
    async fn deliver(&self, _app: &App, delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        let hook: WebPayload = payload::parse(&delivery.payload)?;
        let method = match hook.method.to_ascii_uppercase().as_str() {
            "POST" => reqwest::Method::POST,
            "PUT" => reqwest::Method::PUT,
            "GET" => reqwest::Method::GET,
            "DELETE" => reqwest::Method::DELETE,
            other => {
                return Err(DeliveryError::Permanent(format!(
                    "webhook method {other:?} is not supported; use POST, PUT, GET or DELETE"
                )));
            }
        };
        let sends_body = matches!(method, reqwest::Method::POST | reqwest::Method::PUT);
        let mut request = self
            .client
            .request(method, &hook.url)?
            .header("content-type", "application/json")
            .header(DELIVERY_HEADER, &delivery.delivery_id);
        for (name, value) in &hook.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if sends_body {
            let body = match &hook.body {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            request = request.body(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        classify_status(response.status())
    }
}
