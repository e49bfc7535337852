//! Pushi's REST API at the paths the `pushi` Python client and pushi.js use: login sessions,
//! apps, events, personal-channel subscriptions and sockets.
//!
//! Every route but login, logout and app creation runs for the app its session logged into
//! ([`Session`]), and every query is scoped to that app: one app's token never reads or writes
//! another app's data. Creating apps needs the operator's admin token unless open app
//! creation (Pushi's original behaviour) is switched on.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use crate::app::{App, AppSettings, NewApp};
use crate::clock::now_unix;
use crate::hub::{AppState, Publish, SocketId};
use crate::protocol::channel::NameRules;
use crate::protocol::{ChannelName, frames};
use crate::store::SubscriptionRecord;

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

/// Pushi also reads the session token from a form body's `sid` field (the Python client
/// sends it that way on bodiless POSTs): lift it into `X-Session-Id` so [`Session`], which
/// only sees the request head, finds it.
async fn session_from_form(request: Request, next: axum::middleware::Next) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (mut parts, body) = request.into_parts();
    if !is_form || session_token(&parts).is_some() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let bytes = match axum::body::to_bytes(body, super::signed::MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => return ApiError::too_large("request body is too large").into_response(),
    };
    if let Some((_, sid)) = form_urlencoded::parse(&bytes).find(|(k, _)| k == "sid")
        && let Ok(value) = axum::http::HeaderValue::from_str(&sid)
    {
        parts.headers.insert("x-session-id", value);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Appier's `_id`: a 24-hex identifier on every record, stable for the record.
pub fn record_id(id: i64) -> String {
    format!("{id:024x}")
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

/// `{"result": "success"}`: Pushi's reply when there is nothing else to say.
fn success() -> Json<Value> {
    Json(json!({"result": "success"}))
}

/// Request fields from the query string and the body (JSON object or form), query winning,
/// as Pushi reads them.
pub struct Fields {
    /// Everything, query values over body values.
    pub all: Map<String, Value>,
    /// The body alone (where a name means something else in the query, as Web Push's `auth`).
    pub body: Map<String, Value>,
    query: Vec<(String, String)>,
}

impl Fields {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.all.get(name)
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.all
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// A value from the query string only.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|s| !s.is_empty())
    }

    pub fn required(&self, name: &str) -> ApiResult<&str> {
        self.str(name)
            .ok_or_else(|| ApiError::bad_request(format!("missing field \"{name}\"")))
    }

    /// Pushi's booleans: true unless "", "0", "false" or "False"; JSON booleans as they are.
    pub fn flag(&self, name: &str) -> Option<bool> {
        flag_value(self.all.get(name)?)
    }
}

fn flag_value(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Null => None,
        Value::Number(n) => Some(n.as_f64() != Some(0.0)),
        Value::String(s) => Some(!matches!(s.as_str(), "" | "0" | "false" | "False")),
        _ => Some(true),
    }
}

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let query: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = axum::body::to_bytes(req.into_body(), super::signed::MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::too_large("request body is too large"))?;
        let mut body = Map::new();
        if !bytes.is_empty() {
            if is_form {
                for (k, v) in form_urlencoded::parse(&bytes) {
                    body.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            } else {
                match serde_json::from_slice::<Value>(&bytes) {
                    Ok(Value::Object(map)) => body = map,
                    Ok(_) => return Err(ApiError::bad_request("body must be a JSON object")),
                    Err(e) => {
                        return Err(ApiError::bad_request(format!(
                            "body is not valid JSON: {e}"
                        )));
                    }
                }
            }
        }
        let mut all = body.clone();
        for (k, v) in &query {
            all.insert(k.clone(), Value::String(v.clone()));
        }
        Ok(Self { all, body, query })
    }
}

/// The app a Pushi session is logged into. Routes taking it answer 403 without a session.
pub struct Session {
    pub app: Arc<App>,
    pub state: Arc<AppState>,
}

/// The session token: header `X-Session-Id`, query `sid`/`session_id`/`_sid`, or cookie `sid`.
fn session_token(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get("x-session-id")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.to_owned());
    }
    if let Some(q) = parts.uri.query() {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            if matches!(&*k, "sid" | "session_id" | "_sid") && !v.is_empty() {
                return Some(v.into_owned());
            }
        }
    }
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == "sid")
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<ServerContext> for Session {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ServerContext,
    ) -> Result<Self, Self::Rejection> {
        let not_logged_in =
            || ApiError::forbidden("User not authenticated: log in with GET /login first");
        let token = session_token(parts).ok_or_else(not_logged_in)?;
        let store = ctx.hub.apps.store();
        let app_id = store.session_app(&token).await?.ok_or_else(not_logged_in)?;
        let app = ctx
            .hub
            .apps
            .by_id(&app_id)
            .await?
            .ok_or_else(not_logged_in)?;
        if !app.enabled {
            return Err(ApiError::forbidden(format!("app {} is disabled", app.id)));
        }
        let state = ctx.hub.state(&app);
        Ok(Self { app, state })
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
    json!({
        "id": record.id,
        "enabled": true,
        "description": null,
        "meta": {},
        "created": record.created,
        "modified": record.modified,
        "instance": instance,
        "user_id": record.user_id,
        "event": record.event,
        "_id": record_id(record.id),
    })
}

async fn login(State(ctx): State<ServerContext>, fields: Fields) -> ApiResult<Response> {
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
    let cookie = format!("sid={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={SESSION_MAX_AGE}");
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
    let mut settings = AppSettings::default();
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
    tracing::info!(app_id = %app.id, name = %app.name, "app created over HTTP");
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
    let count = match fields.str("count") {
        Some(c) => c.parse::<u32>().map_err(|_| bad_number("count"))?,
        None => 10,
    };
    let events = ctx
        .hub
        .apps
        .store()
        .recent_events(&session.app.id, count.min(1000))
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
