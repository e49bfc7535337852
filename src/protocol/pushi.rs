//! Frames of Pushi's dialect, as pushi.js and the `pushi` Python client read them.
//!
//! Pushi reuses Pusher's event names for subscriptions but answers with its own payloads:
//! subscription replies carry `{name, members, alias, events}` as a JSON string, member events
//! are `pusher:member_added`/`pusher:member_removed` with a `member` string, and channel events
//! always carry `data` as a string plus `mid`/`timestamp` when the event was stored.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::frames::Frame;

/// The reply events that share the `{name, members, alias, events}` payload.
pub const SUBSCRIBED: &str = "pusher_internal:subscription_succeeded";
pub const UNSUBSCRIBED: &str = "pusher_internal:unsubscription_succeeded";
pub const LATEST: &str = "pusher_internal:latest";

/// `{name, members, alias, events}`: what Pushi tells a client about a channel.
pub struct ChannelView<'a> {
    pub name: &'a str,
    /// user id → that member's channel_data.
    pub members: Vec<(&'a str, &'a RawValue)>,
    pub alias: &'a [String],
    pub events: &'a [Value],
}

pub fn channel_reply(event: &str, view: &ChannelView<'_>) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        name: &'a str,
        members: Map<String, Value>,
        alias: &'a [String],
        events: &'a [Value],
    }
    let members = view
        .members
        .iter()
        .map(|(id, data)| {
            let value = serde_json::from_str(data.get()).unwrap_or(Value::Null);
            ((*id).to_owned(), value)
        })
        .collect();
    let data = serde_json::to_string(&Data {
        name: view.name,
        members,
        alias: view.alias,
        events: view.events,
    })
    .unwrap_or_default();
    #[derive(Serialize)]
    struct Out<'a> {
        event: &'a str,
        data: &'a str,
        channel: &'a str,
    }
    to_frame(&Out {
        event,
        data: &data,
        channel: view.name,
    })
}

/// `pusher:member_added` / `pusher:member_removed` with the member's channel_data as a string.
pub fn member_event(added: bool, channel: &str, channel_data: &RawValue) -> Frame {
    #[derive(Serialize)]
    struct Out<'a> {
        event: &'a str,
        member: &'a str,
        channel: &'a str,
    }
    to_frame(&Out {
        event: if added {
            "pusher:member_added"
        } else {
            "pusher:member_removed"
        },
        member: channel_data.get(),
        channel,
    })
}

/// Where a stored event came from and when: added to the message only when it was persisted.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Stamp {
    pub mid: String,
    pub timestamp: f64,
}

/// A channel event as Pushi sends it (and stores its snapshot): `channel`, `event`, `data` (a
/// string), any extra keys of the REST request, then `mid` and `timestamp` when stored.
#[derive(Serialize)]
pub struct Message<'a> {
    pub channel: &'a str,
    pub event: &'a str,
    pub data: &'a str,
    #[serde(flatten)]
    pub extra: &'a Map<String, Value>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<&'a Stamp>,
}

impl Message<'_> {
    pub fn to_frame(&self) -> Frame {
        to_frame(self)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Pushi sends `data` as a string: strings as they are, anything else as its JSON text.
/// Borrows from `raw` unless the string has escapes to undo.
///
/// Every publish asks for this (the payload limit counts the string form), so it never builds
/// a parse error to find out which case it has: serde's "expected a borrowed string" error
/// formats the whole string, which cost a publish more than its signature check.
pub fn data_text(raw: &RawValue) -> Cow<'_, str> {
    let text = raw.get().trim();
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Cow::Borrowed(text);
    };
    // A JSON string without a backslash has no escape to undo: its contents are the text
    // between the quotes.
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    match serde_json::from_str::<String>(text) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(text),
    }
}

/// A stored event, as Pushi serialises its `PushiEvent` records (history replies, `/events`).
/// Plain fields, so the wire shape does not depend on how the store keeps events.
pub struct StoredEvent<'a> {
    /// The store's id, growing with every event saved.
    pub id: i64,
    pub mid: &'a str,
    pub channel: &'a str,
    /// Socket id of the client that sent it, if a client did.
    pub owner_id: Option<&'a str>,
    /// Unix seconds, with fraction, of when the event was generated.
    pub timestamp: f64,
    /// JSON text of the stored message snapshot.
    pub data: &'a str,
    /// Unix seconds of when the event was saved.
    pub created: i64,
}

impl StoredEvent<'_> {
    /// The event as Pushi lists it, for the app whose ident is `instance`.
    pub fn to_json(&self, instance: &str) -> Value {
        let data: Value = serde_json::from_str(self.data).unwrap_or(Value::Null);
        serde_json::json!({
            "id": self.id,
            "enabled": true,
            "description": null,
            "created": self.created,
            "modified": self.created,
            "meta": {},
            "instance": instance,
            "mid": self.mid,
            "channel": self.channel,
            "owner_id": self.owner_id,
            "timestamp": self.timestamp,
            "data": data,
            "_id": format!("{:024x}", self.id),
        })
    }
}

/// Stored events as Pushi lists them.
pub fn events_json<'a>(
    events: impl IntoIterator<Item = StoredEvent<'a>>,
    instance: &str,
) -> Vec<Value> {
    events.into_iter().map(|e| e.to_json(instance)).collect()
}

fn to_frame<T: Serialize>(value: &T) -> Frame {
    Frame::from(serde_json::to_string(value).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_carries_a_json_string_payload() {
        let data = RawValue::from_string(r#"{"user_id":"u"}"#.into()).unwrap();
        let f = channel_reply(
            SUBSCRIBED,
            &ChannelView {
                name: "presence-a",
                members: vec![("u", &data)],
                alias: &[],
                events: &[],
            },
        );
        let v: Value = serde_json::from_str(f.as_str()).unwrap();
        assert_eq!(v["event"], SUBSCRIBED);
        assert_eq!(v["channel"], "presence-a");
        let inner: Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            inner,
            serde_json::json!({"name": "presence-a", "members": {"u": {"user_id": "u"}}, "alias": [], "events": []})
        );
    }

    #[test]
    fn message_orders_stamp_last_and_stringifies_data() {
        let mut extra = Map::new();
        extra.insert("subject".into(), Value::String("S".into()));
        let stamp = Stamp {
            mid: "m".into(),
            timestamp: 1.5,
        };
        let raw = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        let data = data_text(&raw);
        let m = Message {
            channel: "c",
            event: "e",
            data: &data,
            extra: &extra,
            stamp: Some(&stamp),
        };
        assert_eq!(
            m.to_json(),
            r#"{"channel":"c","event":"e","data":"{\"a\":1}","subject":"S","mid":"m","timestamp":1.5}"#
        );
    }

    #[test]
    fn stored_events_list_as_pushi_lists_them() {
        let event = StoredEvent {
            id: 255,
            mid: "m",
            channel: "c",
            owner_id: None,
            timestamp: 1.5,
            data: r#"{"channel":"c","event":"e","data":"x"}"#,
            created: 7,
        };
        let v = event.to_json("app");
        assert_eq!(v["_id"], "0000000000000000000000ff");
        assert_eq!(v["instance"], "app");
        assert_eq!(v["modified"], 7);
        assert_eq!(v["owner_id"], Value::Null);
        assert_eq!(v["data"]["event"], "e");
    }

    #[test]
    fn data_text_borrows_unless_it_must_unescape() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        let plain = raw(r#""hello""#);
        assert!(matches!(data_text(&plain), Cow::Borrowed("hello")));
        let escaped = raw(r#""{\"a\":1}""#);
        assert!(matches!(data_text(&escaped), Cow::Owned(ref s) if s == r#"{"a":1}"#));
        let object = raw(r#"{"a":1}"#);
        assert!(matches!(data_text(&object), Cow::Borrowed(r#"{"a":1}"#)));
        let number = raw("12");
        assert!(matches!(data_text(&number), Cow::Borrowed("12")));
        let empty = raw(r#""""#);
        assert!(matches!(data_text(&empty), Cow::Borrowed("")));
        let unicode = raw(r#""ação \u00e9""#);
        assert!(matches!(data_text(&unicode), Cow::Owned(ref s) if s == "ação é"));
        let quote_only = raw(r#""\"""#);
        assert!(matches!(data_text(&quote_only), Cow::Owned(ref s) if s == "\""));
    }
}
