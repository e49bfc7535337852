//! Building what the server sends.
//!
//! A [`Frame`] is the finished text of one WebSocket message. It is reference counted, so a
//! publish serialises once and every recipient shares the same bytes.
//!
//! Pusher double-encodes most `data` fields (a JSON string holding JSON); `pusher:error`
//! carries a plain object. Both rules live here and nowhere else.

use serde::Serialize;
use serde_json::value::RawValue;

/// One outgoing WebSocket text message, shared between recipients.
pub type Frame = axum::extract::ws::Utf8Bytes;

fn to_frame<T: Serialize>(value: &T) -> Frame {
    // Serialising plain structs of strings and raw JSON cannot fail.
    Frame::from(serde_json::to_string(value).unwrap_or_default())
}

/// Encodes `value` as JSON, then as a JSON string: Pusher's double encoding of `data`.
fn encode<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[derive(Serialize)]
struct EventFrame<'a, D: Serialize + ?Sized> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a D,
}

fn event_frame<D: Serialize + ?Sized>(event: &str, channel: Option<&str>, data: &D) -> Frame {
    to_frame(&EventFrame {
        event,
        channel,
        data,
    })
}

pub fn connection_established(socket_id: &str, activity_timeout: u64) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        socket_id: &'a str,
        activity_timeout: u64,
    }
    let data = encode(&Data {
        socket_id,
        activity_timeout,
    });
    event_frame("pusher:connection_established", None, &data)
}

/// `pusher:error` with an object `data`. `code` is `null` for errors that are not one of the
/// numbered protocol conditions (Pusher does the same).
pub fn error(code: Option<u16>, message: &str) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    event_frame("pusher:error", None, &Data { code, message })
}

/// `pusher:error` with a `channel` key, for Pushi clients, which route every frame by it.
pub fn error_on_channel(code: Option<u16>, message: &str, channel: &str) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        code: Option<u16>,
        message: &'a str,
    }
    event_frame("pusher:error", Some(channel), &Data { code, message })
}

pub fn ping() -> Frame {
    Frame::from_static(r#"{"event":"pusher:ping","data":{}}"#)
}

pub fn pong() -> Frame {
    Frame::from_static(r#"{"event":"pusher:pong","data":{}}"#)
}

pub fn subscription_succeeded(channel: &str) -> Frame {
    event_frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
    )
}

/// Presence members as Pusher lists them: `ids`, `hash` (id → user_info) and `count`.
pub struct PresenceSnapshot<'a> {
    pub members: Vec<(&'a str, &'a RawValue)>,
}

pub fn presence_subscription_succeeded(channel: &str, snapshot: &PresenceSnapshot<'_>) -> Frame {
    #[derive(Serialize)]
    struct Presence<'a> {
        ids: Vec<&'a str>,
        hash: serde_json::Map<String, serde_json::Value>,
        count: usize,
    }
    #[derive(Serialize)]
    struct Data<'a> {
        presence: Presence<'a>,
    }
    let mut hash = serde_json::Map::new();
    for (id, info) in &snapshot.members {
        let info = serde_json::from_str(info.get()).unwrap_or(serde_json::Value::Null);
        hash.insert((*id).to_owned(), info);
    }
    let data = encode(&Data {
        presence: Presence {
            ids: snapshot.members.iter().map(|(id, _)| *id).collect(),
            count: snapshot.members.len(),
            hash,
        },
    });
    event_frame(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data,
    )
}

/// `pusher:subscription_error`, shaped like pusher-js's own auth failures so the client
/// surfaces it the same way (`{type, error, status}`).
pub fn subscription_error(channel: &str, kind: &str, error: &str, status: u16) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        error: &'a str,
        status: u16,
    }
    event_frame(
        "pusher:subscription_error",
        Some(channel),
        &Data {
            kind,
            error,
            status,
        },
    )
}

pub fn member_added(channel: &str, user_id: &str, user_info: &RawValue) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
        user_info: &'a RawValue,
    }
    let data = encode(&Data { user_id, user_info });
    event_frame("pusher_internal:member_added", Some(channel), &data)
}

pub fn member_removed(channel: &str, user_id: &str) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        user_id: &'a str,
    }
    let data = encode(&Data { user_id });
    event_frame("pusher_internal:member_removed", Some(channel), &data)
}

/// Pusher's subscription counting: how many sockets are subscribed to `channel`, cluster-wide.
pub fn subscription_count(channel: &str, subscription_count: u64) -> Frame {
    #[derive(Serialize)]
    struct Data {
        subscription_count: u64,
    }
    let data = encode(&Data { subscription_count });
    event_frame("pusher_internal:subscription_count", Some(channel), &data)
}

/// An event on a channel. `data` is raw JSON: a string for HTTP triggers, whatever the sender
/// sent for client events. `user_id` is set on client events in presence channels.
pub fn channel_event(event: &str, channel: &str, data: &RawValue, user_id: Option<&str>) -> Frame {
    #[derive(Serialize)]
    struct Out<'a> {
        event: &'a str,
        channel: &'a str,
        data: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        user_id: Option<&'a str>,
    }
    to_frame(&Out {
        event,
        channel,
        data,
        user_id,
    })
}

pub fn cache_miss(channel: &str) -> Frame {
    #[derive(Serialize)]
    struct Out<'a> {
        event: &'static str,
        channel: &'a str,
    }
    to_frame(&Out {
        event: "pusher:cache_miss",
        channel,
    })
}

pub fn signin_success(user_data: &str) -> Frame {
    #[derive(Serialize)]
    struct Data<'a> {
        user_data: &'a str,
    }
    let data = encode(&Data { user_data });
    event_frame("pusher:signin_success", None, &data)
}

/// Watchlist changes: `online` / `offline` with the user ids concerned.
pub fn watchlist_event(name: &str, user_ids: &[&str]) -> Frame {
    #[derive(Serialize)]
    struct Item<'a> {
        name: &'a str,
        user_ids: &'a [&'a str],
    }
    #[derive(Serialize)]
    struct Data<'a> {
        events: [Item<'a>; 1],
    }
    let data = encode(&Data {
        events: [Item { name, user_ids }],
    });
    event_frame("pusher_internal:watchlist_events", None, &data)
}

/// JSON text of `s` as a string literal: how an HTTP trigger's `data` string goes on the wire.
pub fn json_string(s: &str) -> Box<RawValue> {
    let text = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    RawValue::from_string(text).unwrap_or_else(|_| empty_string())
}

fn empty_string() -> Box<RawValue> {
    // A literal that is always valid JSON.
    RawValue::from_string("\"\"".to_owned()).expect("literal is valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_established_double_encodes() {
        let f = connection_established("1.2", 120);
        assert_eq!(
            f.as_str(),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#
        );
    }

    #[test]
    fn error_data_is_an_object() {
        assert_eq!(
            error(Some(4001), "no").as_str(),
            r#"{"event":"pusher:error","data":{"code":4001,"message":"no"}}"#
        );
        assert_eq!(
            error(None, "x").as_str(),
            r#"{"event":"pusher:error","data":{"code":null,"message":"x"}}"#
        );
    }

    #[test]
    fn channel_event_keeps_raw_data() {
        let data = json_string(r#"{"a":1}"#);
        assert_eq!(
            channel_event("e", "c", &data, None).as_str(),
            r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#
        );
        let obj = RawValue::from_string(r#"{"a":1}"#.into()).unwrap();
        assert_eq!(
            channel_event("client-e", "presence-c", &obj, Some("7")).as_str(),
            r#"{"event":"client-e","channel":"presence-c","data":{"a":1},"user_id":"7"}"#
        );
    }

    #[test]
    fn presence_snapshot_lists_members() {
        let info = RawValue::from_string(r#"{"name":"A"}"#.into()).unwrap();
        let f = presence_subscription_succeeded(
            "presence-x",
            &PresenceSnapshot {
                members: vec![("1", &info)],
            },
        );
        let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
        let data: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["ids"][0], "1");
        assert_eq!(data["presence"]["hash"]["1"]["name"], "A");
        assert_eq!(data["presence"]["count"], 1);
    }
}
