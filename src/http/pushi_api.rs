//! Pushi's REST API at the paths the `pushi` Python client and pushi.js use: login sessions,
//! apps, events, personal-channel subscriptions and sockets.
//!
//! Every route but login, logout and app creation runs for the app its session logged into
//! ([`Session`]), and every query is scoped to that app: one app's token never reads or writes
//! another app's data. Creating apps needs the operator's admin token unless open app
//! creation (Pushi's original behaviour) is switched on.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use super::extract::{Fields, Secure, Session, flag_value, session_from_form, session_token};
use super::pushi_json::{record_json, success};
use crate::app::{App, AppSettings, NewApp};
use crate::clock::now_unix;
use crate::hub::{Publish, SocketId};
use crate::protocol::channel::NameRules;
use crate::protocol::{ChannelName, frames};
use crate::store::SubscriptionRecord;

/// Events `GET /events` lists when `count` does not say (or says 0), as Pushi.
const DEFAULT_EVENT_COUNT: u32 = 10;

/// How long a login session lasts, in seconds (also the cookie's max age).
const SESSION_MAX_AGE: i64 = 30 * 24 * 3600;

pub fn router() -> Router<ServerContext> {
    Router::new()
        .route("/login", get(login).post(login))
        .route("/logout", get(logout).post(logout))
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/ping", get(ping))
        .route("/apps/{ident}", get(show_app).put(update_app))
        .route("/events", get(list_events).post(create_event))
        .route(
            "/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/subscriptions/{user_id}/{event}",
            axum::routing::delete(delete_subscription),
        )
        .route("/sockets", get(list_sockets))
        .route("/sockets/{socket_id}", get(show_socket).post(show_socket))
        .layer(axum::middleware::from_fn(session_from_form))
}

/// The operator's policy for app creation and cross-app reads.
#[derive(Clone, Default)]
pub struct AdminPolicy {
    /// `Authorization: Bearer <token>` grants app creation and listing across apps.
    pub token: Option<Arc<str>>,
    /// Pushi's original behaviour: anyone may `POST /apps`.
    pub open_apps: bool,
}

impl AdminPolicy {
    fn is_admin(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else {
            return false;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| crate::auth::constant_time_eq(given.trim(), expected))
    }
}

/// An app as Pushi shows it. The secret only appears in the reply that creates the app.
fn app_json(app: &App, with_secret: bool) -> Value {
    let mut out = json!({
        "id": app.id.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::from(app.id.clone())),
        "enabled": app.enabled,
        "description": app.description,
        "meta": {},
        "name": app.name,
        "created": app.created,
        "modified": app.modified,
        "ident": app.ident,
        "key": app.key,
        "instance": app.ident,
        "app_id": app.id,
        "_id": app.ident.get(..24).map(str::to_owned).unwrap_or_else(|| app.ident.clone()),
        "settings": app.settings.public_view(),
    });
    if with_secret {
        out["secret"] = Value::from(app.secret.clone());
    }
    out
}

fn subscription_json(record: &SubscriptionRecord, instance: &str) -> Value {
    let mut out = record_json(record.id, record.created, record.modified, instance);
    out["user_id"] = json!(record.user_id);
    out["event"] = json!(record.event);
    out
}

async fn login(
    State(ctx): State<ServerContext>,
    Secure(secure): Secure,
    fields: Fields,
) -> ApiResult<Response> {
    let app_id = fields.required("app_id")?;
    let key = fields.required("app_key")?;
    let secret = fields.required("app_secret")?;
    let by_ident = ctx
        .hub
        .apps
        .all()
        .await?
        .into_iter()
        .find(|a| a.ident == app_id);
    let app = match by_ident {
        Some(app) => Some(app),
        None => ctx.hub.apps.by_id(app_id).await?,
    };
    let valid = app.filter(|a| {
        crate::auth::constant_time_eq(&a.key, key)
            & crate::auth::constant_time_eq(&a.secret, secret)
    });
    let Some(app) = valid else {
        return Err(ApiError::unauthorized(
            "no app with that app_id, app_key and app_secret",
        ));
    };
    let token = ctx.hub.apps.store().create_session(&app.id).await?;
    // pushi.js calls the REST API from the app's own pages, usually another site, with
    // credentials: over TLS the cookie must be `SameSite=None` (which browsers accept only
    // with `Secure`) to travel there, as the original's unmarked cookie did. Plain HTTP keeps
    // `Lax`, the most a non-secure cookie can have.
    let same_site = if secure { "None; Secure" } else { "Lax" };
    let cookie =
        format!("sid={token}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={SESSION_MAX_AGE}");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({"token": token})),
    )
        .into_response())
}

async fn logout(State(ctx): State<ServerContext>, request: Request) -> ApiResult<Json<Value>> {
    let (parts, _) = request.into_parts();
    if let Some(token) = session_token(&parts) {
        ctx.hub.apps.store().delete_session(&token).await?;
    }
    Ok(success())
}

async fn create_app(
    State(ctx): State<ServerContext>,
    headers: HeaderMap,
    fields: Fields,
) -> ApiResult<Response> {
    if !ctx.admin.open_apps && !ctx.admin.is_admin(&headers) {
        return Err(ApiError::forbidden(
            "creating apps needs the admin token (Authorization: Bearer $PUSHI_ADMIN_TOKEN), or PUSHI_OPEN_APPS=1",
        ));
    }
    let name = fields.required("name")?.to_owned();
    let mut settings = AppSettings::pushi_profile();
    apply_settings(&mut settings, &fields)?;
    let app = ctx
        .hub
        .apps
        .create(NewApp {
            name,
            settings,
            description: fields.str("description").map(str::to_owned),
        })
        .await?;
    tracing::info!(app_id = %app.id, name = %crate::logs::clip(&app.name), "app created over HTTP");
    Ok((StatusCode::OK, Json(app_json(&app, true))).into_response())
}

/// Applies the per-app settings a request names; unknown fields are ignored.
fn apply_settings(settings: &mut AppSettings, fields: &Fields) -> ApiResult<()> {
    let number = |name: &str| -> ApiResult<Option<u64>> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad_number(name)),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| bad_number(name)),
            Some(_) => Err(bad_number(name)),
        }
    };
    if let Some(v) = fields.flag("client_events") {
        settings.client_events = v;
    }
    if let Some(v) = fields.flag("legacy_auth") {
        settings.legacy_auth = v;
    }
    if let Some(v) = fields.flag("subscription_count") {
        settings.subscription_count = v;
    }
    if let Some(v) = fields.flag("public_client_events") {
        settings.public_client_events = v;
    }
    if let Some(v) = fields.flag("persist_client_events") {
        settings.persist_client_events = v;
    }
    if let Some(v) = number("max_connections")? {
        settings.max_connections = u32::try_from(v).ok();
    }
    if let Some(v) = number("max_payload_bytes")? {
        settings.max_payload_bytes = v as usize;
    }
    if let Some(v) = number("max_presence_members")? {
        settings.max_presence_members = v as usize;
    }
    if let Some(v) = number("client_event_rate")? {
        settings.client_event_rate = u32::try_from(v).unwrap_or(u32::MAX);
    }
    Ok(())
}

fn bad_number(name: &str) -> ApiError {
    ApiError::bad_request(format!("{name} must be a non-negative integer"))
}

async fn list_apps(
    State(ctx): State<ServerContext>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<Json<Value>> {
    if ctx.admin.is_admin(&headers) {
        let apps: Vec<Value> = ctx
            .hub
            .apps
            .all()
            .await?
            .iter()
            .map(|a| app_json(a, false))
            .collect();
        return Ok(Json(json!({"apps": apps})));
    }
    let (mut parts, _) = request.into_parts();
    let session = Session::from_request_parts(&mut parts, &ctx).await?;
    Ok(Json(json!({"apps": [app_json(&session.app, false)]})))
}

async fn ping(State(ctx): State<ServerContext>, session: Session) -> ApiResult<Json<Value>> {
    let channels = [ChannelName::parse("global", NameRules::Pushi)
        .map_err(|e| ApiError::internal(e.to_string()))?];
    let data = frames::json_string("ping");
    ctx.hub
        .publish(&session.state, &Publish::new(&channels, "ping", &data))
        .await?;
    Ok(success())
}

/// The session's own app, by ident or numeric id; any other is "not found".
fn own_app<'a>(session: &'a Session, ident: &str) -> ApiResult<&'a Arc<App>> {
    if session.app.ident == ident || session.app.id == ident {
        Ok(&session.app)
    } else {
        Err(ApiError::not_found(format!(
            "no app {ident:?} for this session"
        )))
    }
}

async fn show_app(session: Session, Path(ident): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(app_json(own_app(&session, &ident)?, false)))
}

async fn update_app(
    State(ctx): State<ServerContext>,
    session: Session,
    Path(ident): Path<String>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let mut app = (**own_app(&session, &ident)?).clone();
    if let Some(name) = fields.str("name") {
        app.name = name.to_owned();
    }
    if let Some(description) = fields.str("description") {
        app.description = Some(description.to_owned());
    }
    if let Some(enabled) = fields.flag("enabled") {
        app.enabled = enabled;
    }
    apply_settings(&mut app.settings, &fields)?;
    app.modified = now_unix();
    let app = ctx.hub.apps.update(app).await?;
    ctx.hub.state(&app);
    Ok(Json(app_json(&app, false)))
}

async fn list_events(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let count = fields.count(DEFAULT_EVENT_COUNT)?;
    let events = ctx
        .hub
        .apps
        .store()
        .recent_events(&session.app.id, count)
        .await?;
    let events = crate::protocol::pushi::events_json(
        events.iter().map(crate::protocol::pushi::StoredEvent::from),
        &session.app.ident,
    );
    Ok(Json(json!({"events": events})))
}

async fn create_event(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let mut body = fields.all;
    let data = body.remove("data").unwrap_or(Value::Null);
    if is_falsy(&data) {
        return Err(ApiError::bad_request("missing event data (\"data\")"));
    }
    let event = match body.remove("event") {
        Some(Value::String(s)) if !s.is_empty() => s,
        None | Some(Value::Null) => "message".to_owned(),
        Some(_) => return Err(ApiError::bad_request("\"event\" must be a string")),
    };
    let channels: Vec<ChannelName> = match body.remove("channel") {
        None | Some(Value::Null) => vec!["global".to_owned()],
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(list)) => list
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(ApiError::bad_request("\"channel\" entries must be strings")),
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "\"channel\" must be a string or a list of strings",
            ));
        }
    }
    .iter()
    .map(|c| {
        ChannelName::parse(c, NameRules::Pushi).map_err(|e| ApiError::bad_request(e.to_string()))
    })
    .collect::<ApiResult<_>>()?;
    let persist = body.get("persist").and_then(flag_value).unwrap_or(true);
    body.remove("sid");
    let raw = match &data {
        Value::String(s) => frames::json_string(s),
        other => frames::json_string(&other.to_string()),
    };
    let publish = Publish {
        persist,
        extra: Some(&body),
        ..Publish::new(&channels, &event, &raw)
    };
    ctx.hub.publish(&session.state, &publish).await?;
    Ok(success())
}

/// Pushi refuses events whose data is empty or false-like.
fn is_falsy(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

async fn list_subscriptions(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let records = ctx
        .hub
        .apps
        .store()
        .list_subscriptions(&session.app.id, fields.str("user_id"), fields.str("event"))
        .await?;
    let list: Vec<Value> = records
        .iter()
        .map(|r| subscription_json(r, &session.app.ident))
        .collect();
    Ok(Json(json!({"subscriptions": list})))
}

async fn create_subscription(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let user_id = fields.required("user_id")?;
    let event = fields.required("event")?;
    ChannelName::parse(event, NameRules::Pushi)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The user's stream is `personal-{user_id}`: an id that cannot name it is refused here,
    // not found out when the user's socket subscribes.
    ChannelName::personal(user_id).map_err(|e| {
        ApiError::bad_request(format!("user_id cannot name a personal channel: {e}"))
    })?;
    let (record, _created) = ctx
        .hub
        .apps
        .store()
        .create_subscription(&session.app.id, user_id, event)
        .await?;
    Ok(Json(subscription_json(&record, &session.app.ident)))
}

async fn delete_subscription(
    State(ctx): State<ServerContext>,
    session: Session,
    Path((user_id, event)): Path<(String, String)>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let deleted = ctx
        .hub
        .apps
        .store()
        .delete_subscription(&session.app.id, &user_id, &event)
        .await?;
    match deleted {
        Some(record) => Ok(Json(subscription_json(&record, &session.app.ident))),
        None if fields.flag("force") == Some(true) => Err(ApiError::not_found(format!(
            "no subscription of {user_id:?} to {event:?}"
        ))),
        None => Ok(success()),
    }
}

async fn list_sockets(session: Session) -> Json<Value> {
    let sockets: Vec<Value> = session
        .state
        .sockets_with_channels()
        .into_iter()
        .map(|(id, channels)| json!({"socket_id": id.to_string(), "channels": channels}))
        .collect();
    Json(json!({"sockets": sockets}))
}

async fn show_socket(session: Session, Path(socket_id): Path<String>) -> Json<Value> {
    let channels = SocketId::parse(&socket_id)
        .and_then(|id| {
            session
                .state
                .sockets_with_channels()
                .into_iter()
                .find(|(s, _)| *s == id)
                .map(|(_, channels)| channels)
        })
        .unwrap_or_default();
    Json(json!({"channels": channels}))
}
