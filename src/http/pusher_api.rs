//! Pusher's HTTP API (`/apps/{app_id}/...`): triggers and channel queries.
//!
//! Every route takes [`Signed`], so none runs unauthenticated; triggers go through
//! [`Hub::publish`](crate::hub::Hub::publish) like every other event.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use super::extract::Signed;
use crate::hub::{AppState, Hub, Publish, SocketId};
use crate::protocol::channel::NameRules;
use crate::protocol::{ChannelName, MAX_BATCH_EVENTS, frames};

pub fn router() -> Router<ServerContext> {
    Router::new()
        .route("/apps/{app_id}/events", post(trigger))
        .route("/apps/{app_id}/batch_events", post(batch))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{channel}", get(channel))
        .route("/apps/{app_id}/channels/{channel}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate),
        )
        .route(
            "/users/{user_id}/terminate_connections",
            post(terminate_by_key),
        )
}

/// One event as the trigger and batch bodies carry it.
#[derive(Debug, Deserialize)]
struct EventBody {
    name: Option<String>,
    data: Option<Value>,
    channels: Option<Vec<String>>,
    channel: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

/// What `info=` asked for, per channel.
#[derive(Default)]
struct InfoRequest {
    user_count: bool,
    subscription_count: bool,
    cache: bool,
}

impl InfoRequest {
    fn parse(info: Option<&str>) -> ApiResult<Self> {
        let mut out = Self::default();
        for attr in info
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match attr {
                "user_count" => out.user_count = true,
                "subscription_count" => out.subscription_count = true,
                "cache" => out.cache = true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown info attribute {other:?}; use user_count, subscription_count or cache"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn any(&self) -> bool {
        self.user_count || self.subscription_count || self.cache
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON for this request: {e}")))
}

fn channel_name(name: &str) -> ApiResult<ChannelName> {
    ChannelName::parse(name, NameRules::Pusher).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// One event of a trigger or a batch, checked against everything a publish would refuse.
struct Trigger {
    channels: Vec<ChannelName>,
    name: String,
    data: Box<RawValue>,
    exclude: Option<SocketId>,
    info: InfoRequest,
}

impl Trigger {
    /// Reads an event body and checks it whole (names, sizes, `socket_id`, `info`), so that
    /// a batch can be refused before any of its events is published.
    fn check(event: EventBody, state: &AppState) -> ApiResult<Self> {
        let name = event
            .name
            .ok_or_else(|| ApiError::bad_request("missing event name (\"name\")"))?;
        let channels: Vec<ChannelName> = match (event.channels, event.channel) {
            (Some(list), _) => list
                .iter()
                .map(|c| channel_name(c))
                .collect::<ApiResult<_>>()?,
            (None, Some(one)) => vec![channel_name(&one)?],
            (None, None) => {
                return Err(ApiError::bad_request(
                    "missing \"channels\" (a list) or \"channel\"",
                ));
            }
        };
        let data = match event.data {
            Some(Value::String(s)) => frames::json_string(&s),
            Some(other) => frames::json_string(&other.to_string()),
            None => return Err(ApiError::bad_request("missing event data (\"data\")")),
        };
        let exclude = match event.socket_id.as_deref() {
            None | Some("") => None,
            Some(s) => Some(SocketId::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!("socket_id {s:?} is not of the form 123.456"))
            })?),
        };
        let trigger = Self {
            channels,
            name,
            data,
            exclude,
            info: InfoRequest::parse(event.info.as_deref())?,
        };
        Hub::validate(state, &trigger.as_publish())?;
        Ok(trigger)
    }

    fn as_publish(&self) -> Publish<'_> {
        Publish {
            exclude: self.exclude,
            ..Publish::new(&self.channels, &self.name, &self.data)
        }
    }
}

/// Publishes a checked event; returns the per-channel info it asked for, if any.
async fn publish(
    ctx: &ServerContext,
    state: &AppState,
    trigger: &Trigger,
) -> ApiResult<Option<Value>> {
    ctx.hub.publish(state, &trigger.as_publish()).await?;
    if !trigger.info.any() {
        return Ok(None);
    }
    ctx.hub.sync_cluster().await;
    let mut out = Map::new();
    for channel in &trigger.channels {
        out.insert(
            channel.to_string(),
            channel_info_fields(ctx, state, channel, &trigger.info),
        );
    }
    Ok(Some(Value::Object(out)))
}

/// The requested attributes of one channel (attributes a channel cannot have are left out).
fn channel_info_fields(
    ctx: &ServerContext,
    state: &AppState,
    channel: &ChannelName,
    info: &InfoRequest,
) -> Value {
    let stats = state
        .channel_stats(channel.as_str())
        .unwrap_or(crate::hub::ChannelStats {
            subscription_count: 0,
            user_count: 0,
        });
    let mut out = Map::new();
    if info.user_count && channel.is_presence() {
        out.insert("user_count".into(), json!(stats.user_count));
    }
    if info.subscription_count {
        out.insert("subscription_count".into(), json!(stats.subscription_count));
    }
    if info.cache
        && channel.is_cache()
        && let Some((event, data, ttl)) =
            state.cached_event(channel.as_str(), ctx.hub.config.cache_ttl)
    {
        out.insert(
            "cache".into(),
            json!({"event": event, "data": data, "ttl": ttl.as_secs()}),
        );
    }
    Value::Object(out)
}

async fn trigger(State(ctx): State<ServerContext>, signed: Signed) -> ApiResult<Json<Value>> {
    let trigger = Trigger::check(parse_body(&signed.body)?, &signed.state)?;
    Ok(Json(match publish(&ctx, &signed.state, &trigger).await? {
        Some(channels) => json!({ "channels": channels }),
        None => json!({}),
    }))
}

#[derive(Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

async fn batch(State(ctx): State<ServerContext>, signed: Signed) -> ApiResult<Json<Value>> {
    let body: BatchBody = parse_body(&signed.body)?;
    if body.batch.len() > MAX_BATCH_EVENTS {
        return Err(ApiError::bad_request(format!(
            "batch has {} events; at most {MAX_BATCH_EVENTS}",
            body.batch.len()
        )));
    }
    // Every event is checked before any is published: a bad batch publishes nothing.
    let triggers = body
        .batch
        .into_iter()
        .enumerate()
        .map(|(i, event)| {
            Trigger::check(event, &signed.state)
                .map_err(|e| ApiError::new(e.status, format!("batch event {i}: {}", e.message)))
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let mut infos = Vec::with_capacity(triggers.len());
    let mut any_info = false;
    for trigger in &triggers {
        let info = publish(&ctx, &signed.state, trigger).await?;
        any_info |= info.is_some();
        // A batch item addresses one channel: its info is that channel's attributes.
        infos.push(
            info.and_then(|v| v.as_object().and_then(|m| m.values().next().cloned()))
                .unwrap_or_else(|| json!({})),
        );
    }
    Ok(Json(if any_info {
        json!({ "batch": infos })
    } else {
        json!({})
    }))
}

async fn channels(State(ctx): State<ServerContext>, signed: Signed) -> ApiResult<Json<Value>> {
    ctx.hub.sync_cluster().await;
    let prefix = signed.param("filter_by_prefix").unwrap_or("");
    let info = InfoRequest::parse(signed.param("info"))?;
    if info.user_count && !prefix.starts_with("presence-") {
        return Err(ApiError::bad_request(
            "info=user_count needs filter_by_prefix=presence- (only presence channels have users)",
        ));
    }
    let mut out = Map::new();
    // Only names a Pusher client could use: a channel only Pushi clients can name
    // (`news/eu`) would be a name this API then refuses in every other call.
    let listed = signed
        .state
        .occupied_channels(prefix)
        .into_iter()
        .filter(|(name, _)| NameRules::Pusher.check(name).is_ok());
    for (name, stats) in listed {
        let mut attrs = Map::new();
        if info.user_count {
            attrs.insert("user_count".into(), json!(stats.user_count));
        }
        if info.subscription_count {
            attrs.insert("subscription_count".into(), json!(stats.subscription_count));
        }
        out.insert(name.to_string(), Value::Object(attrs));
    }
    Ok(Json(json!({ "channels": out })))
}

async fn channel(
    State(ctx): State<ServerContext>,
    Path((_app_id, name)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<Json<Value>> {
    let channel = channel_name(&name)?;
    let info = InfoRequest::parse(signed.param("info"))?;
    ctx.hub.sync_cluster().await;
    if info.user_count && !channel.is_presence() {
        return Err(ApiError::bad_request(
            "info=user_count is only available for presence channels",
        ));
    }
    let occupied = signed.state.channel_stats(channel.as_str()).is_some();
    let mut out = Map::new();
    out.insert("occupied".into(), json!(occupied));
    if let Value::Object(attrs) = channel_info_fields(&ctx, &signed.state, &channel, &info) {
        out.extend(attrs);
    }
    Ok(Json(Value::Object(out)))
}

async fn users(
    State(ctx): State<ServerContext>,
    Path((_app_id, name)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<Json<Value>> {
    ctx.hub.sync_cluster().await;
    let channel = channel_name(&name)?;
    if !channel.is_presence() {
        return Err(ApiError::bad_request(format!(
            "{channel} is not a presence channel; only presence channels have users"
        )));
    }
    let users: Vec<Value> = signed
        .state
        .presence_user_ids(channel.as_str())
        .into_iter()
        .map(|id| json!({ "id": id }))
        .collect();
    Ok(Json(json!({ "users": users })))
}

async fn terminate(
    Path((_app_id, user_id)): Path<(String, String)>,
    signed: Signed,
) -> ApiResult<Json<Value>> {
    terminate_user(&user_id, signed)
}

/// The same, at the path the PyPI SDK uses (no `/apps/{id}` prefix; `auth_key` names the app).
async fn terminate_by_key(Path(user_id): Path<String>, signed: Signed) -> ApiResult<Json<Value>> {
    terminate_user(&user_id, signed)
}

fn terminate_user(user_id: &str, signed: Signed) -> ApiResult<Json<Value>> {
    let closed = signed.state.terminate_user(user_id);
    tracing::info!(app_id = %signed.app.id, user_id = %crate::logs::clip(user_id), closed, "terminated user connections");
    Ok(Json(json!({})))
}
