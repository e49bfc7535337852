//! The publish path: the one way an event enters the system.
//!
//! HTTP triggers, batch triggers, Pushi's REST events and client events all call
//! [`Hub::publish`]. It validates, stores the event if asked (before anyone sees it, so an
//! acknowledged publish survives a crash), records offline deliveries, fans out to this node's
//! sockets, hands the event to the other nodes, and reports a client event to the webhooks.
//!
//! What a client may cause is decided here too, so it holds for both dialects and whatever
//! node the client is on: a client event never carries a server event's name, is stored and
//! sent to offline targets only where the app allows it (`persist_client_events`), and is
//! never kept by a cache channel.
//!
//! The event's data is normalised once, into [`EventData`]: its raw JSON and Pushi's string
//! form are each built at most once per publish and shared by every step.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::Hub;
use super::app_state::AppState;
use super::debug::DebugEventKind;
use super::socket::SocketId;
use crate::cluster::RemotePublish;
use crate::notify::pusher_webhooks::HookEvent;
use crate::protocol::pushi::{self, Stamp};
use crate::protocol::{self, ChannelName};
use crate::store::{NewEvent, StoreError};

/// What a publish asks for. Channel names were parsed by the caller (a [`ChannelName`] is
/// always valid); the hub checks the rest in [`Hub::validate`].
pub struct Publish<'a> {
    pub channels: &'a [ChannelName],
    pub event: &'a str,
    /// Raw JSON: a string for HTTP triggers, whatever the sender sent for client events.
    pub data: &'a RawValue,
    /// The socket that must not receive it (the sender, or the trigger's `socket_id`).
    pub exclude: Option<SocketId>,
    /// Set on client events in presence channels: who sent it.
    pub user_id: Option<&'a str>,
    /// Store the event in each channel's history (Pushi) before delivering it. For a client
    /// event this is only a request: the app's `persist_client_events` decides.
    pub persist: bool,
    /// Set when the publish is a client event: the socket that sent it. It is recorded as the
    /// stored event's owner, and the publish reports the app's `client_event` webhook.
    pub sender: Option<SocketId>,
    /// Extra keys of a Pushi REST request, forwarded in Pushi frames and stored.
    pub extra: Option<&'a Map<String, Value>>,
}

impl<'a> Publish<'a> {
    /// A plain publish: no persistence, no exclusion, no extras, not a client event.
    pub fn new(channels: &'a [ChannelName], event: &'a str, data: &'a RawValue) -> Self {
        Self {
            channels,
            event,
            data,
            exclude: None,
            user_id: None,
            persist: false,
            sender: None,
            extra: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{0}")]
    Invalid(String),
    #[error("event data (with any extra keys) is {size} bytes; this app allows at most {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("could not store the event: {0}")]
    Store(#[from] StoreError),
}

/// An event's data in the two shapes the publish path needs, each built at most once per
/// publish: the raw JSON (Pusher frames, the cache, the cluster message) and Pushi's string
/// form (Pushi frames, the stored snapshot, offline deliveries, the payload limit, the
/// `client_event` webhook). The string form borrows the raw JSON unless it has escapes.
pub struct EventData<'a> {
    raw: &'a RawValue,
    text: OnceLock<Cow<'a, str>>,
}

impl<'a> EventData<'a> {
    pub fn new(raw: &'a RawValue) -> Self {
        Self {
            raw,
            text: OnceLock::new(),
        }
    }

    pub fn raw(&self) -> &'a RawValue {
        self.raw
    }

    /// Pushi's string form: a string's contents, anything else as its JSON text. Built on
    /// first use, so a publish no Pushi socket or store needs never builds it.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| pushi::data_text(self.raw))
    }
}

/// The length of `extra`'s JSON text, without building it.
fn encoded_len(extra: &Map<String, Value>) -> usize {
    if extra.is_empty() {
        return 0;
    }
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a map of JSON values to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, extra);
    count.0
}

/// An empty map, for publishes without extra keys.
pub(super) fn no_extra() -> &'static Map<String, Value> {
    static EMPTY: OnceLock<Map<String, Value>> = OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

impl Hub {
    /// The one publish path: validate, store if asked, record offline deliveries, fan out to
    /// every local subscriber of each channel (serialising once per channel and dialect),
    /// hand it to the other nodes, and report a client event. Returns the number of frames
    /// queued on this node.
    pub async fn publish(
        &self,
        state: &AppState,
        publish: &Publish<'_>,
    ) -> Result<usize, PublishError> {
        let accepted = std::time::Instant::now();
        let data = Self::check(state, publish)?;
        // A client event reaches history and offline targets only if the app allows it;
        // otherwise it is delivered live and nothing more.
        let durable = publish.sender.is_none() || state.app().settings.persist_client_events;
        let stamps = if publish.persist && durable {
            Some(self.persist(state, publish, &data).await?)
        } else {
            None
        };
        if durable && (publish.sender.is_none() || publish.persist) {
            self.record_deliveries(state, publish, &data, stamps.as_deref())
                .await?;
        }
        let sent = state.fan_out(publish, &data, stamps.as_deref(), self.config.cache_ttl);
        state
            .metrics
            .publish_seconds
            .record(accepted.elapsed().as_secs_f64());
        state
            .debug
            .emit(|| DebugEventKind::published(publish, &data, sent, false));
        if let Some(cluster) = &self.cluster {
            cluster
                .publish(RemotePublish {
                    app: state.app().id.clone(),
                    channels: publish.channels.iter().map(|c| c.to_string()).collect(),
                    event: publish.event.to_owned(),
                    data: data.raw().to_owned(),
                    exclude: publish.exclude.map(|s| s.to_string()),
                    user_id: publish.user_id.map(str::to_owned),
                    extra: publish.extra.cloned().unwrap_or_default(),
                    stamps,
                    sender: publish.sender.map(|s| s.to_string()),
                })
                .await;
        }
        if let Some(sender) = publish.sender {
            for channel in publish.channels {
                state.report(|| HookEvent::ClientEvent {
                    channel: channel.to_string(),
                    event: publish.event.to_owned(),
                    data: data.text().to_owned(),
                    socket_id: sender.to_string(),
                    user_id: publish.user_id.map(str::to_owned),
                });
            }
        }
        state
            .metrics
            .events_published
            .increment(publish.channels.len() as u64);
        if publish.sender.is_some() {
            state.metrics.client_events.increment(1);
        }
        Ok(sent)
    }

    /// Whether `publish` may be published in `state`'s app: at least one and at most the
    /// app's `max_channels_per_publish` channels, an event name within its
    /// `max_event_name_len` (never a server event's for a client event), data and extra keys
    /// together within its payload limit, and no extra key the server sets itself. Checks
    /// only; publishes nothing.
    pub fn validate(state: &AppState, publish: &Publish<'_>) -> Result<(), PublishError> {
        Self::check(state, publish).map(drop)
    }

    /// [`Hub::validate`], keeping the normalised data for the rest of the publish.
    fn check<'a>(state: &AppState, publish: &Publish<'a>) -> Result<EventData<'a>, PublishError> {
        let app = state.app();
        if publish.channels.is_empty() {
            return Err(PublishError::Invalid("no channel given".into()));
        }
        if publish.channels.len() > app.settings.max_channels_per_publish {
            return Err(PublishError::Invalid(format!(
                "at most {} channels per event",
                app.settings.max_channels_per_publish
            )));
        }
        protocol::channel::validate_event_name(publish.event, app.settings.max_event_name_len)
            .map_err(PublishError::Invalid)?;
        if publish.sender.is_some() && protocol::channel::is_reserved_event_name(publish.event) {
            return Err(PublishError::Invalid(format!(
                "event names starting with {} are reserved for the server",
                protocol::channel::RESERVED_EVENT_PREFIXES.join(" or ")
            )));
        }
        let data = EventData::new(publish.data);
        // The limit applies to a string's contents, or to the raw JSON otherwise (the string
        // form's length), plus the extra keys a Pushi REST event carries along: every
        // recipient, the store and each offline delivery get those too.
        let size = data.text().len() + publish.extra.map_or(0, encoded_len);
        if size > app.settings.max_payload_bytes {
            return Err(PublishError::TooLarge {
                size,
                limit: app.settings.max_payload_bytes,
            });
        }
        if let Some(extra) = publish.extra
            && let Some(key) = ["mid", "timestamp"]
                .into_iter()
                .find(|k| extra.contains_key(*k))
        {
            return Err(PublishError::Invalid(format!(
                "\"{key}\" is set by the server and cannot be sent"
            )));
        }
        Ok(data)
    }

    /// Stores one event per channel (with the users' history links) and returns their stamps.
    async fn persist(
        &self,
        state: &AppState,
        publish: &Publish<'_>,
        data: &EventData<'_>,
    ) -> Result<Vec<Stamp>, PublishError> {
        let app = state.app();
        let extra: &Map<String, Value> = match publish.extra {
            Some(extra) => extra,
            None => no_extra(),
        };
        let timestamp = crate::clock::now_unix_f64();
        let mut stamps = Vec::with_capacity(publish.channels.len());
        let mut events = Vec::with_capacity(publish.channels.len());
        for channel in publish.channels {
            let snapshot = pushi::Message {
                channel: channel.as_str(),
                event: publish.event,
                data: data.text(),
                extra,
                stamp: None,
            };
            let stamp = Stamp {
                mid: uuid::Uuid::new_v4().to_string(),
                timestamp,
            };
            events.push(NewEvent {
                mid: stamp.mid.clone(),
                channel: channel.to_string(),
                event: publish.event.to_owned(),
                owner_id: publish.sender.map(|o| o.to_string()),
                timestamp,
                data: snapshot.to_json(),
            });
            stamps.push(stamp);
        }
        self.apps.store().save_events(&app.id, &events).await?;
        Ok(stamps)
    }

    /// Records the offline deliveries a publish causes, before anyone sees the event, so a
    /// publish that was acknowledged cannot lose them. Apps without targets pay one cached
    /// lookup.
    async fn record_deliveries(
        &self,
        state: &AppState,
        publish: &Publish<'_>,
        data: &EventData<'_>,
        stamps: Option<&[Stamp]>,
    ) -> Result<(), PublishError> {
        let Some(notifier) = &self.notifier else {
            return Ok(());
        };
        let app = state.app();
        if !notifier.has_targets(&app.id).await? {
            return Ok(());
        }
        let data = data.text();
        let extra: &Map<String, Value> = match publish.extra {
            Some(extra) => extra,
            None => no_extra(),
        };
        let messages: Vec<(String, Map<String, Value>)> = publish
            .channels
            .iter()
            .enumerate()
            .map(|(i, channel)| {
                let message = pushi::Message {
                    channel: channel.as_str(),
                    event: publish.event,
                    data,
                    extra,
                    stamp: stamps.and_then(|s| s.get(i)),
                };
                let map = match serde_json::to_value(&message) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                };
                (channel.to_string(), map)
            })
            .collect();
        notifier.record(&app.id, &messages).await?;
        Ok(())
    }
}
