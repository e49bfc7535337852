//! One app, live: what is connected and subscribed now (`/live`), a stream of what happens
//! (`/stream`, Server-Sent Events), and publishing an event (`/events`).
//!
//! The stream sends the app's [`DebugEvent`](crate::hub::debug::DebugEvent)s as they happen
//! (`debug`), a fresh snapshot whenever connections or subscriptions changed (`snapshot`, at
//! most every [`SNAPSHOT_EVERY`], and every [`RECHECK_EVERY`] anyway so other nodes' changes
//! show), and `lagged` when the browser fell behind and events were dropped for it. It
//! listens to the app's debug tap only while a stream is open.
//!
//! Everything here is this node's view; channel counts and presence members are cluster-wide
//! (they come from the hub's replicas), the socket list and the event stream are this node's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{Operator, json_object};
use crate::http::ServerContext;
use crate::http::error::{ApiError, ApiResult};
use crate::hub::debug::{DebugEventKind, DebugListener, Heard};
use crate::hub::{AppState, Publish, SocketId};
use crate::protocol::channel::NameRules;
use crate::protocol::{ChannelKind, ChannelName, frames};

/// Most channels, sockets and members per presence channel a snapshot lists.
const MAX_LISTED: usize = 500;
/// How often a changed app's snapshot is sent at most.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(250);
/// How often the snapshot is compared with the last one sent even without a local change.
const RECHECK_EVERY: u32 = 8;

/// What is connected and subscribed in the app now.
pub fn snapshot_json(ctx: &ServerContext, state: &AppState) -> Value {
    let occupied = state.occupied_channels("");
    let channels: Vec<Value> = occupied
        .iter()
        .take(MAX_LISTED)
        .map(|(name, stats)| {
            let mut channel = json!({
                "name": &**name,
                "subscription_count": stats.subscription_count,
            });
            if ChannelKind::of(name) == ChannelKind::Presence {
                let members = state.members(name);
                let listed: Vec<Value> = members
                    .user_infos()
                    .into_iter()
                    .take(MAX_LISTED)
                    .map(|(id, info)| json!({"id": id, "info": info}))
                    .collect();
                channel["user_count"] = json!(members.len());
                channel["members"] = json!(listed);
            }
            channel
        })
        .collect();
    let sockets = state.sockets_with_channels();
    let listed_sockets: Vec<Value> = sockets
        .iter()
        .take(MAX_LISTED)
        .map(|(id, channels)| json!({"socket_id": id.to_string(), "channels": channels}))
        .collect();
    json!({
        "app_id": state.app().id,
        "node": ctx.cluster.as_ref().map(|c| c.config.node_id.clone()),
        "connections": state.connection_count(),
        "channel_count": occupied.len(),
        "channels": channels,
        "socket_count": sockets.len(),
        "sockets": listed_sockets,
    })
}

pub async fn snapshot(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = operator.app(&ctx, &app_id).await?;
    ctx.hub.sync_cluster().await;
    let state = ctx.hub.state(&app);
    Ok(Json(snapshot_json(&ctx, &state)))
}

pub async fn stream(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let app = operator.app(&ctx, &app_id).await?;
    // The app's state is created if no socket was seen yet, so the tap hears the first one.
    let state = ctx.hub.state(&app);
    let watch = Watch {
        listener: state.debug.listen(),
        state,
        ctx,
        last_snapshot: String::new(),
        changed: true,
        ticks: 0,
        tick: tokio::time::interval(SNAPSHOT_EVERY),
    };
    let sse = Sse::new(watch.into_stream()).keep_alive(KeepAlive::default());
    // Proxies that buffer responses (nginx) would hold the events back.
    Ok((
        [("x-accel-buffering", "no"), ("cache-control", "no-cache")],
        sse,
    ))
}

/// One open stream's state.
struct Watch {
    ctx: ServerContext,
    state: Arc<AppState>,
    listener: DebugListener,
    last_snapshot: String,
    /// A socket connected, left, subscribed or unsubscribed since the last snapshot.
    changed: bool,
    ticks: u32,
    tick: tokio::time::Interval,
}

impl Watch {
    fn into_stream(mut self) -> impl Stream<Item = Result<Event, Infallible>> {
        self.tick
            .set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        futures_util::stream::unfold(self, |mut watch| async move {
            let event = watch.next().await;
            Some((Ok(event), watch))
        })
    }

    async fn next(&mut self) -> Event {
        loop {
            tokio::select! {
                heard = self.listener.recv() => match heard {
                    Heard::Event(event) => {
                        self.changed |= !matches!(event.kind, DebugEventKind::Published { .. });
                        return sse_json("debug", &*event);
                    }
                    Heard::Missed(missed) => {
                        self.changed = true;
                        return sse_json("lagged", &json!({"missed": missed}));
                    }
                },
                _ = self.tick.tick() => {
                    self.ticks = self.ticks.wrapping_add(1);
                    if !self.changed && !self.ticks.is_multiple_of(RECHECK_EVERY) {
                        continue;
                    }
                    self.changed = false;
                    let snapshot = snapshot_json(&self.ctx, &self.state).to_string();
                    if snapshot != self.last_snapshot {
                        self.last_snapshot = snapshot.clone();
                        return Event::default().event("snapshot").data(snapshot);
                    }
                }
            }
        }
    }
}

fn sse_json(name: &str, value: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(data)
}

/// `POST /admin/api/apps/{id}/events`: `channel` or `channels`, `event`, `data` (a string is
/// sent as it is, other JSON as its text, as Pusher's HTTP API does), optional `socket_id`
/// to exclude and `persist` (Pushi's history). Goes through [`Hub::publish`] like any event.
///
/// [`Hub::publish`]: crate::hub::Hub::publish
pub async fn publish(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let app = operator.app(&ctx, &app_id).await?;
    let fields = json_object(&body)?;
    let names: Vec<&str> = match (fields.get("channels"), fields.get("channel")) {
        (Some(Value::Array(list)), _) => list
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| ApiError::bad_request("channels: expected a list of names"))
            })
            .collect::<ApiResult<_>>()?,
        (Some(_), _) => return Err(ApiError::bad_request("channels: expected a list of names")),
        (None, Some(Value::String(one))) => vec![one.as_str()],
        (None, Some(_)) => return Err(ApiError::bad_request("channel: expected a name")),
        (None, None) => {
            return Err(ApiError::bad_request(
                "channel: required (or \"channels\", a list)",
            ));
        }
    };
    let channels: Vec<ChannelName> = names
        .iter()
        .map(|name| {
            ChannelName::parse(name, NameRules::Pushi)
                .map_err(|e| ApiError::bad_request(format!("channel {name:?}: {e}")))
        })
        .collect::<ApiResult<_>>()?;
    let event = match fields.get("event") {
        Some(Value::String(event)) => event.as_str(),
        _ => return Err(ApiError::bad_request("event: required, a name")),
    };
    let data: Box<RawValue> = match fields.get("data") {
        Some(Value::String(text)) => frames::json_string(text),
        Some(other) => frames::json_string(&other.to_string()),
        None => return Err(ApiError::bad_request("data: required")),
    };
    let exclude = match fields.get("socket_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(SocketId::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("socket_id: {s:?} is not of the form 123.456"))
        })?),
        Some(_) => return Err(ApiError::bad_request("socket_id: expected text")),
    };
    let persist = match fields.get("persist") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("persist: expected true or false")),
    };
    let state = ctx.hub.state(&app);
    let publish = Publish {
        exclude,
        persist,
        ..Publish::new(&channels, event, &data)
    };
    let frames = ctx.hub.publish(&state, &publish).await?;
    Ok(Json(
        json!({"channels": names, "event": event, "frames": frames}),
    ))
}
