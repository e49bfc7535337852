//! Pushi's REST API at the paths the `pushi` Python client and pushi.js use: login sessions,
//! apps, events, personal-channel subscriptions and sockets.
//!
//! Every route but login, logout and app creation runs for the app its session logged into
//! ([`Session`]), and every query is scoped to that app: one app's token never reads or writes
//! another app's data. Creating apps needs the operator's admin token unless open app
//! creation (Pushi's original behaviour) is switched on. `/apps/{app_id}/subscribe` and
//! `/unsubscribe` (from Pushi's README) also take a request signed like Pusher's HTTP API.
//!
//! `POST /apps` and `PUT /apps/{ident}` take every app field and setting through
//! [`App::with_changes`], the rules the admin API, `pushi apps set` and the TOML file share;
//! values sent as text are read in the setting's type by [`typed_setting`].

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::ServerContext;
use super::admin::apps::configured_refusal;
use super::error::{ApiError, ApiResult};
use super::extract::{
    Fields, Secure, Session, Signed, flag_value, session_from_form, session_token,
};
use super::pushi_json::{record_json, success};
use crate::app::{App, AppSettings, NewApp, typed_setting};
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
        .route("/apps/{app_id}/subscribe", post(seed_subscribe))
        .route("/apps/{app_id}/unsubscribe", post(seed_unsubscribe))
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
    // with `Secure`) to travel there, as the original's unmarked cookie did, and
    // `Partitioned` so browsers that block third-party cookies still keep it for the app's
    // site (and only for it). Plain HTTP keeps `Lax`, the most a non-secure cookie can have.
    let same_site = if secure {
        "None; Secure; Partitioned"
    } else {
        "Lax"
    };
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
    fields.required("name")?;
    // The settings an app created here starts from, before the request's own.
    let base = AppSettings::pushi_profile();
    // Checked on a draft first, so nothing is stored unless every field is valid.
    let draft = NewApp {
        settings: base,
        ..NewApp::default()
    }
    .into_app();
    let draft = draft.with_changes(&app_changes(&fields))?;
    let app = ctx.hub.apps.create_from_draft(draft).await?;
    tracing::info!(app_id = %app.id, name = %crate::logs::clip(&app.name), "app created over HTTP");
    Ok((StatusCode::OK, Json(app_json(&app, true))).into_response())
}

/// Names under which a Pushi client sends its session token, not an app field.
const SESSION_FIELDS: &[&str] = &["sid", "session_id", "_sid"];

/// Fields of the app record that are assigned by the server. Pushi ignores them on input
/// ("safe" fields), and so does pushi: a record read, edited and sent back is accepted.
const ASSIGNED_FIELDS: &[&str] = &[
    "id", "_id", "app_id", "ident", "instance", "key", "secret", "created", "modified",
];

/// The app fields and settings a Pushi request names, typed: values sent as text (query
/// strings, forms) are read in the setting's type ([`typed_setting`]). Unknown names are
/// kept, for [`App::with_changes`] to refuse with the name.
fn app_changes(fields: &Fields) -> Map<String, Value> {
    fields
        .all
        .iter()
        .filter(|(name, _)| {
            !SESSION_FIELDS.contains(&name.as_str()) && !ASSIGNED_FIELDS.contains(&name.as_str())
        })
        .map(|(name, value)| (name.clone(), typed_setting(name, value.clone())))
        .collect()
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
    let app = own_app(&session, &ident)?;
    if ctx.hub.apps.is_static(&app.id) {
        return Err(configured_refusal(&app.id, "change its settings"));
    }
    let changes = app_changes(&fields);
    let changed = app.with_changes(&changes)?;
    let app = ctx.hub.apps.update(changed).await?;
    ctx.hub.state(&app);
    tracing::info!(app_id = %app.id, fields = ?changes.keys().map(|k| crate::logs::clip(k)).collect::<Vec<_>>(), "app changed over HTTP");
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
    subscribe_user(&ctx, &session.app, &fields).await
}

async fn delete_subscription(
    State(ctx): State<ServerContext>,
    session: Session,
    Path((user_id, event)): Path<(String, String)>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    unsubscribe_user(&ctx, &session.app, &user_id, &event, &fields).await
}

/// Subscribes `user_id` to `event` (a channel): its events reach `personal-{user_id}` and
/// the user's history. An existing subscription is returned as it is.
async fn subscribe_user(ctx: &ServerContext, app: &App, fields: &Fields) -> ApiResult<Json<Value>> {
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
        .create_subscription(&app.id, user_id, event)
        .await?;
    Ok(Json(subscription_json(&record, &app.ident)))
}

/// Removes `user_id`'s subscription to `event`: the record, or `{"result": "success"}` when
/// there was none (404 with `force`).
async fn unsubscribe_user(
    ctx: &ServerContext,
    app: &App,
    user_id: &str,
    event: &str,
    fields: &Fields,
) -> ApiResult<Json<Value>> {
    let deleted = ctx
        .hub
        .apps
        .store()
        .delete_subscription(&app.id, user_id, event)
        .await?;
    match deleted {
        Some(record) => Ok(Json(subscription_json(&record, &app.ident))),
        None if fields.flag("force") == Some(true) => Err(ApiError::not_found(format!(
            "no subscription of {user_id:?} to {event:?}"
        ))),
        None => Ok(success()),
    }
}

/// `POST /apps/{app_id}/subscribe` (Pushi's README): `POST /subscriptions` by another path.
async fn seed_subscribe(
    State(ctx): State<ServerContext>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let (app, fields) = seed_caller(&ctx, request).await?;
    subscribe_user(&ctx, &app, &fields).await
}

/// `POST /apps/{app_id}/unsubscribe` (Pushi's README): `DELETE
/// /subscriptions/{user_id}/{event}` with both as fields.
async fn seed_unsubscribe(
    State(ctx): State<ServerContext>,
    request: Request,
) -> ApiResult<Json<Value>> {
    let (app, fields) = seed_caller(&ctx, request).await?;
    let user_id = fields.required("user_id")?;
    let event = fields.required("event")?;
    unsubscribe_user(&ctx, &app, user_id, event, &fields).await
}

/// The app a `/apps/{app_id}/(un)subscribe` request acts for, and its fields. Either a Pushi
/// session logged into that app (`app_id` its ident or numeric id), or a request signed
/// with the app's secret as Pusher's HTTP API signs them (`app_id` the numeric id; the
/// fields then come from the signed query string and JSON body).
async fn seed_caller(ctx: &ServerContext, request: Request) -> ApiResult<(Arc<App>, Fields)> {
    let (mut parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, super::extract::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large("request body is too large"))?;
    let fields = Fields::from_request(
        Request::from_parts(parts.clone(), axum::body::Body::from(bytes.clone())),
        ctx,
    )
    .await?;
    if session_token(&parts).is_some() {
        let session = Session::from_request_parts(&mut parts, ctx).await?;
        let Path(app_id) = Path::<String>::from_request_parts(&mut parts, ctx)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        own_app(&session, &app_id)?;
        return Ok((session.app, fields));
    }
    if fields.query("auth_signature").is_none() {
        return Err(ApiError::forbidden(
            "log in first (GET /login, then send the session token) or sign the request with the app's secret as Pusher's HTTP API does",
        ));
    }
    let signed = Signed::from_request(
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        ctx,
    )
    .await?;
    Ok((signed.app, fields))
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
