//! Parsing what a client sends.
//!
//! Parsing is two steps: the envelope (`event`, `channel`, `data`, Pushi's `echo`/`persist`)
//! is read once, then the connection decides what the event means for its dialect and reads
//! `data` into the matching request type. Every failure is an [`InboundError`] whose text is
//! sent back to the client, so messages name the field that was wrong.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InboundError {
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    #[error("message is not a JSON object with an \"event\" string")]
    NoEvent,
    #[error("binary frames are not supported; send JSON text frames")]
    Binary,
    #[error("{event}: missing field \"{field}\"")]
    MissingField { event: String, field: &'static str },
    #[error("{event}: invalid data: {reason}")]
    BadData { event: String, reason: String },
}

/// The outer shape every client message shares.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    /// Pushi: deliver the event to the sender too.
    #[serde(default)]
    pub echo: Option<bool>,
    /// Pushi: store the event in the channel's history.
    #[serde(default)]
    pub persist: Option<bool>,
}

impl Envelope {
    pub fn parse(text: &str) -> Result<Self, InboundError> {
        serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => InboundError::NoEvent,
            _ => InboundError::NotJson(e.to_string()),
        })
    }

    /// Reads `data` as `T`. Pusher clients send an object; some send the same object encoded
    /// as a JSON string, which is accepted too.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, InboundError> {
        let raw = self
            .data
            .as_ref()
            .ok_or_else(|| InboundError::MissingField {
                event: self.event.clone(),
                field: "data",
            })?;
        let bad = |e: serde_json::Error| InboundError::BadData {
            event: self.event.clone(),
            reason: e.to_string(),
        };
        match serde_json::from_str::<T>(raw.get()) {
            Ok(v) => Ok(v),
            Err(first) => match serde_json::from_str::<String>(raw.get()) {
                Ok(inner) => serde_json::from_str(&inner).map_err(bad),
                Err(_) => Err(bad(first)),
            },
        }
    }
}

/// `pusher:subscribe` data.
#[derive(Debug, Deserialize)]
pub struct SubscribeData {
    pub channel: String,
    #[serde(default)]
    pub auth: Option<String>,
    /// Pusher sends a JSON string; Pushi clients send an object. Kept raw so the signature can
    /// be checked against exactly what was sent.
    #[serde(default)]
    pub channel_data: Option<Box<RawValue>>,
}

impl SubscribeData {
    /// The channel_data as the text the client signed: a string's contents, or the raw JSON
    /// of an object.
    pub fn channel_data_text(&self) -> Option<String> {
        let raw = self.channel_data.as_ref()?;
        match serde_json::from_str::<String>(raw.get()) {
            Ok(s) => Some(s),
            Err(_) if raw.get() == "null" => None,
            Err(_) => Some(raw.get().to_owned()),
        }
    }
}

/// `pusher:unsubscribe` data.
#[derive(Debug, Deserialize)]
pub struct UnsubscribeData {
    pub channel: String,
}

/// `pusher:signin` data.
#[derive(Debug, Deserialize)]
pub struct SigninData {
    pub auth: String,
    pub user_data: String,
}

/// The `user_data` object a sign-in carries (a JSON string inside `pusher:signin`).
#[derive(Debug, Deserialize)]
pub struct UserData {
    pub id: serde_json::Value,
    #[serde(default)]
    pub watchlist: Option<Vec<serde_json::Value>>,
}

/// Presence `channel_data`: who the member is and what others see of them.
#[derive(Debug, Deserialize)]
pub struct PresenceData {
    pub user_id: serde_json::Value,
    #[serde(default)]
    pub user_info: Option<Box<RawValue>>,
    /// Pushi: pair this member with every other member on `peer-` channels.
    #[serde(default)]
    pub peer: bool,
}

/// Pusher and Pushi both allow user ids as JSON numbers; the protocol always sends strings.
pub fn user_id_string(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Alias used by the connection for what a client message is.
pub type ClientMessage = Envelope;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_needs_event() {
        assert_eq!(
            Envelope::parse(r#"{"data":{}}"#).unwrap_err(),
            InboundError::NoEvent
        );
        assert_eq!(Envelope::parse("[1]").unwrap_err(), InboundError::NoEvent);
        assert!(matches!(
            Envelope::parse("{nope").unwrap_err(),
            InboundError::NotJson(_)
        ));
    }

    #[test]
    fn subscribe_data_accepts_object_or_string() {
        let e = Envelope::parse(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        assert_eq!(e.data_as::<SubscribeData>().unwrap().channel, "a");
        let e = Envelope::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
            .unwrap();
        assert_eq!(e.data_as::<SubscribeData>().unwrap().channel, "b");
        let e = Envelope::parse(r#"{"event":"pusher:subscribe"}"#).unwrap();
        assert!(matches!(
            e.data_as::<SubscribeData>(),
            Err(InboundError::MissingField { .. })
        ));
    }

    #[test]
    fn channel_data_text_is_what_was_signed() {
        let e = Envelope::parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","channel_data":"{\"user_id\":1}"}}"#,
        )
        .unwrap();
        let d: SubscribeData = e.data_as().unwrap();
        assert_eq!(d.channel_data_text().unwrap(), r#"{"user_id":1}"#);
        let e = Envelope::parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"presence-a","channel_data":{"user_id":"u"}}}"#,
        )
        .unwrap();
        let d: SubscribeData = e.data_as().unwrap();
        assert_eq!(d.channel_data_text().unwrap(), r#"{"user_id":"u"}"#);
    }
}
