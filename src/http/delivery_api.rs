//! Offline-delivery REST API at Pushi's paths: delivery subscriptions (`/webs`, `/smtps`,
//! `/apns`, `/web_pushes`), the app's VAPID key, direct messaging (`/messaging/*`) and the
//! outbox's state (`/deliveries`).
//!
//! Every route runs for the session's app. Targets are URLs, e-mail addresses, device tokens
//! or push endpoints; in paths they are percent-encoded, so `DELETE /webs/{url}` works for
//! URLs with slashes (the original's could not be routed).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use super::extract::{Fields, Session};
use super::pushi_json::record_json;
use crate::auth;
use crate::notify::matching::web_push_text;
use crate::notify::payload::{
    self, ApnPayload, EmailPayload, SmtpOverride, WebPayload, WebPushPayload,
};
use crate::notify::web_push;
use crate::protocol::ChannelName;
use crate::protocol::channel::NameRules;
use crate::store::{
    DeliveryKind, DeliveryRecord, DeliveryStatus, NewDelivery, NewTarget, TargetKind, TargetRecord,
};

pub fn router() -> Router<ServerContext> {
    let mut router = Router::new();
    for kind in TargetKind::ALL {
        let base = format!("/{}", collection(kind));
        router = router
            .route(
                &base,
                get(move |s, st, f| list_targets(kind, s, st, f))
                    .post(move |s, st, f| create_target(kind, s, st, f)),
            )
            .route(
                &format!("{base}/{{target}}"),
                axum::routing::delete(move |s, st, p, f| delete_target(kind, s, st, p, f)),
            )
            .route(
                &format!("{base}/{{target}}/{{event}}"),
                axum::routing::delete(move |s, st, p, f| delete_target_event(kind, s, st, p, f)),
            );
    }
    router
        .route("/vapid_key", get(vapid_key))
        .route("/messaging", post(send_many))
        .route("/messaging/send", post(send_many))
        .route("/messaging/apn", post(send_apn))
        .route("/messaging/email", post(send_email))
        .route("/messaging/webhook", post(send_webhook))
        .route("/messaging/web_push", post(send_web_push))
        .route("/deliveries", get(list_deliveries))
}

/// The REST collection of a target kind, and the field naming its target.
fn collection(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Web => "webs",
        TargetKind::Smtp => "smtps",
        TargetKind::Apn => "apns",
        TargetKind::WebPush => "web_pushes",
    }
}

fn target_field(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Web => "url",
        TargetKind::Smtp => "email",
        TargetKind::Apn => "token",
        TargetKind::WebPush => "endpoint",
    }
}

/// A target record as Pushi lists it.
fn target_json(record: &TargetRecord, instance: &str) -> Value {
    let mut out = record_json(record.id, record.created, record.created, instance);
    out["event"] = json!(record.event);
    out[target_field(record.kind)] = json!(record.target);
    if record.kind == TargetKind::WebPush {
        out["p256dh"] = json!(record.p256dh);
        out["auth"] = json!(record.auth);
    }
    out
}

fn list_json(records: &[TargetRecord], instance: &str) -> Json<Value> {
    let list: Vec<Value> = records.iter().map(|r| target_json(r, instance)).collect();
    Json(json!({"subscriptions": list}))
}

async fn list_targets(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let records = ctx
        .hub
        .apps
        .store()
        .list_targets(
            &session.app.id,
            kind,
            fields.str(target_field(kind)),
            fields.str("event"),
        )
        .await?;
    Ok(list_json(&records, &session.app.ident))
}

/// Channels that need a signature to subscribe need one here too, over `target:channel`.
fn needs_auth(event: &str) -> bool {
    ["private-", "presence-", "peer-", "personal-"]
        .iter()
        .any(|p| event.starts_with(p))
}

async fn create_target(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let field = target_field(kind);
    let target = fields.required(field)?.to_owned();
    let event = fields.required("event")?.to_owned();
    ChannelName::parse(&event, NameRules::Pushi)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    validate_target(kind, &target)?;
    let (p256dh, browser_auth) = if kind == TargetKind::WebPush {
        let body = |name: &str| {
            fields
                .body
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    ApiError::bad_request(format!("missing field \"{name}\" in the JSON body"))
                })
        };
        let (p256dh, secret) = (body("p256dh")?, body("auth")?);
        web_push::validate_subscription(&p256dh, &secret).map_err(ApiError::bad_request)?;
        (Some(p256dh), Some(secret))
    } else {
        (None, None)
    };
    if needs_auth(&event) {
        // For Web Push the body's `auth` is the browser secret; the signature comes in the
        // query as `auth` too (Pushi's client) — so read it from the query-only view.
        let signature = match kind {
            TargetKind::WebPush => fields.query("auth"),
            _ => fields.str("auth"),
        }
        .unwrap_or_default();
        let app = &session.app;
        let message = format!("{target}:{event}");
        if !auth::verify_auth_string(&app.key, &app.secret, &message, signature) {
            return Err(ApiError::forbidden(format!(
                "{event} is a private channel: send auth = key:HMAC-SHA256(secret, \"{field}:{event}\")"
            )));
        }
    }
    let store = ctx.hub.apps.store();
    if fields.flag("unsubscribe") == Some(true) {
        // Move semantics: the target keeps only this subscription.
        for other in store
            .list_targets(&session.app.id, kind, Some(&target), None)
            .await?
        {
            if other.event != event {
                store
                    .delete_targets(&session.app.id, kind, &target, Some(&other.event))
                    .await?;
            }
        }
    }
    let (record, _created) = store
        .create_target(
            &session.app.id,
            NewTarget {
                kind,
                target,
                event,
                p256dh,
                auth: browser_auth,
            },
        )
        .await?;
    invalidate(&ctx, &session.app.id);
    Ok(Json(target_json(&record, &session.app.ident)))
}

fn validate_target(kind: TargetKind, target: &str) -> ApiResult<()> {
    match kind {
        TargetKind::Web | TargetKind::WebPush => {
            let url = reqwest::Url::parse(target)
                .map_err(|e| ApiError::bad_request(format!("{target:?} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ApiError::bad_request(format!(
                    "{target:?} must be an http(s) URL"
                )));
            }
        }
        TargetKind::Smtp => {
            if !target.contains('@') {
                return Err(ApiError::bad_request(format!(
                    "{target:?} is not an e-mail address"
                )));
            }
        }
        TargetKind::Apn => {
            if !target.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ApiError::bad_request(format!(
                    "APNs device token {target:?} must be hex"
                )));
            }
        }
    }
    Ok(())
}

fn invalidate(ctx: &ServerContext, app_id: &str) {
    if let Some(notifier) = &ctx.hub.notifier {
        notifier.invalidate(app_id);
    }
}

async fn delete_target(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    Path(target): Path<String>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let event = fields.str("event").map(str::to_owned);
    remove(kind, &ctx, &session, &target, event.as_deref(), &fields).await
}

async fn delete_target_event(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    Path((target, event)): Path<(String, String)>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    remove(kind, &ctx, &session, &target, Some(&event), &fields).await
}

/// Without an event: deletes every subscription of the target and lists them. With one:
/// deletes that subscription and returns it; `{"result": "success"}` if there was none (404
/// with `force`).
async fn remove(
    kind: TargetKind,
    ctx: &ServerContext,
    session: &Session,
    target: &str,
    event: Option<&str>,
    fields: &Fields,
) -> ApiResult<Json<Value>> {
    let deleted = ctx
        .hub
        .apps
        .store()
        .delete_targets(&session.app.id, kind, target, event)
        .await?;
    invalidate(ctx, &session.app.id);
    match (event, deleted.first()) {
        (None, _) => Ok(list_json(&deleted, &session.app.ident)),
        (Some(_), Some(record)) => Ok(Json(target_json(record, &session.app.ident))),
        (Some(event), None) if fields.flag("force") == Some(true) => Err(ApiError::not_found(
            format!("{target:?} has no subscription to {event:?}"),
        )),
        (Some(_), None) => Ok(Json(json!({"result": "success"}))),
    }
}

/// The app's VAPID public key, generating and storing a key pair on first request.
async fn vapid_key(State(ctx): State<ServerContext>, session: Session) -> ApiResult<Json<Value>> {
    let private = match &session.app.settings.delivery.vapid_key {
        Some(key) if !key.trim().is_empty() => key.clone(),
        _ => {
            let mut app = (*session.app).clone();
            let key = web_push::generate_vapid_key();
            app.settings.delivery.vapid_key = Some(key.clone());
            app.modified = crate::clock::now_unix();
            let app = ctx.hub.apps.update(app).await?;
            ctx.hub.state(&app);
            tracing::info!(app_id = %app.id, "generated a VAPID key pair");
            key
        }
    };
    let public = web_push::vapid_public_key(&private)
        .map_err(|e| ApiError::internal(format!("the app's VAPID key is unusable: {e}")))?;
    Ok(Json(json!({"vapid_public_key": public})))
}

// Direct messaging ----------------------------------------------------------------------

/// One string or a list of strings.
fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn missing(what: &str, field: &str) -> ApiError {
    ApiError::bad_request(format!("No {what} specified (field \"{field}\")"))
}

/// Records direct deliveries, waits briefly for their first attempt, and reports each one.
async fn dispatch(
    ctx: &ServerContext,
    session: &Session,
    deliveries: Vec<NewDelivery>,
    wait: bool,
) -> ApiResult<Vec<Value>> {
    let store = ctx.hub.apps.store();
    let recorded = store
        .enqueue_deliveries(&session.app.id, &deliveries)
        .await?;
    if let Some(notifier) = &ctx.hub.notifier {
        notifier.wake();
    }
    let mut current: BTreeMap<i64, DeliveryRecord> =
        recorded.into_iter().map(|d| (d.id, d)).collect();
    if wait {
        let timeout = ctx
            .hub
            .notifier
            .as_ref()
            .map(|n| n.config.request_timeout)
            .unwrap_or(Duration::from_secs(10))
            + Duration::from_secs(1);
        let deadline = tokio::time::Instant::now() + timeout;
        let ids: Vec<i64> = current.keys().copied().collect();
        while tokio::time::Instant::now() < deadline {
            let latest = store.get_deliveries(&session.app.id, &ids).await?;
            let settled = latest
                .iter()
                .all(|d| d.status != DeliveryStatus::Pending || d.attempts > 0);
            for d in latest {
                current.insert(d.id, d);
            }
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(current
        .values()
        .map(|d| {
            json!({
                "target": d.target,
                "delivery_id": d.delivery_id,
                "status": match (d.status, d.attempts) {
                    (DeliveryStatus::Pending, 0) => "queued",
                    (DeliveryStatus::Pending, _) => "retrying",
                    (DeliveryStatus::Delivered, _) => "delivered",
                    (DeliveryStatus::Failed, _) => "failed",
                },
                "error": d.last_error,
            })
        })
        .collect())
}

/// `{"success", <targets key>: [...], "results": [...]}`: success means nothing failed yet.
fn report(key: &str, targets: Vec<String>, results: Vec<Value>) -> Value {
    let success = results.iter().all(|r| r["status"] != "failed");
    json!({"success": success, key: targets, "results": results})
}

fn wait(fields: &Fields) -> bool {
    fields.flag("wait").unwrap_or(true)
}

fn apn_deliveries(
    fields: &Fields,
    tokens_field: &str,
    message_field: &str,
    fallback: Option<&Value>,
) -> ApiResult<(Vec<String>, Vec<NewDelivery>)> {
    let tokens = strings(fields.get(tokens_field));
    if tokens.is_empty() {
        return Err(missing("device tokens", tokens_field));
    }
    let message = fields
        .get(message_field)
        .filter(|v| !v.is_null())
        .or(fallback)
        .cloned()
        .ok_or_else(|| missing("message", message_field))?;
    let sandbox = fields.flag("sandbox");
    let deliveries = tokens
        .iter()
        .map(|token| NewDelivery {
            kind: DeliveryKind::Apn,
            target: token.clone(),
            payload: payload::to_json(&ApnPayload {
                token: token.clone(),
                message: message.clone(),
                sandbox,
            }),
        })
        .collect();
    Ok((tokens, deliveries))
}

async fn send_apn(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let (tokens, deliveries) = apn_deliveries(&fields, "tokens", "message", None)?;
    let results = dispatch(&ctx, &session, deliveries, wait(&fields)).await?;
    Ok(Json(report("tokens", tokens, results)))
}

fn smtp_override(fields: &Fields) -> Option<SmtpOverride> {
    let o = SmtpOverride {
        host: fields.str("smtp_host").map(str::to_owned),
        port: fields
            .str("smtp_port")
            .and_then(|p| p.parse().ok())
            .or_else(|| {
                fields
                    .get("smtp_port")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
            }),
        user: fields.str("smtp_user").map(str::to_owned),
        password: fields.str("smtp_password").map(str::to_owned),
        starttls: fields.flag("smtp_starttls"),
        sender: fields.str("smtp_sender").map(str::to_owned),
    };
    (o != SmtpOverride::default()).then_some(o)
}

fn email_deliveries(
    fields: &Fields,
    to_field: &str,
    subject: Option<String>,
    body: Option<String>,
    html: bool,
    smtp: Option<SmtpOverride>,
) -> ApiResult<(Vec<String>, Vec<NewDelivery>)> {
    let to = strings(fields.get(to_field));
    if to.is_empty() {
        return Err(missing("recipient", to_field));
    }
    let subject = subject.ok_or_else(|| missing("subject", "subject"))?;
    let body = body.ok_or_else(|| missing("body", "body"))?;
    let deliveries = to
        .iter()
        .map(|address| NewDelivery {
            kind: DeliveryKind::Smtp,
            target: address.clone(),
            payload: payload::to_json(&EmailPayload {
                to: address.clone(),
                subject: subject.clone(),
                body: body.clone(),
                html,
                smtp: smtp.clone(),
            }),
        })
        .collect();
    Ok((to, deliveries))
}

async fn send_email(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let (to, deliveries) = email_deliveries(
        &fields,
        "to",
        fields.str("subject").map(str::to_owned),
        fields.str("body").map(str::to_owned),
        fields.flag("html").unwrap_or(false),
        smtp_override(&fields),
    )?;
    let results = dispatch(&ctx, &session, deliveries, wait(&fields)).await?;
    Ok(Json(report("recipients", to, results)))
}

fn headers(value: Option<&Value>) -> ApiResult<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if let Some(Value::Object(map)) = value {
        for (name, v) in map {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(&value).is_err()
            {
                return Err(ApiError::bad_request(format!("invalid header {name:?}")));
            }
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

fn webhook_deliveries(
    urls: Vec<String>,
    url_field: &str,
    data: Option<Value>,
    headers: BTreeMap<String, String>,
    method: String,
) -> ApiResult<(Vec<String>, Vec<NewDelivery>)> {
    if urls.is_empty() {
        return Err(missing("webhook URL", url_field));
    }
    let method = method.to_ascii_uppercase();
    if !matches!(method.as_str(), "POST" | "PUT" | "GET" | "DELETE") {
        return Err(ApiError::bad_request(format!(
            "method {method:?} is not supported; use POST, PUT, GET or DELETE"
        )));
    }
    for url in &urls {
        validate_target(TargetKind::Web, url)?;
    }
    let deliveries = urls
        .iter()
        .map(|url| NewDelivery {
            kind: DeliveryKind::Web,
            target: url.clone(),
            payload: payload::to_json(&WebPayload {
                url: url.clone(),
                method: method.clone(),
                headers: headers.clone(),
                body: data.clone(),
            }),
        })
        .collect();
    Ok((urls, deliveries))
}

async fn send_webhook(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let mut urls = strings(fields.get("urls"));
    urls.extend(strings(fields.get("url")));
    let data = fields
        .get("data")
        .filter(|v| !v.is_null())
        .cloned()
        .ok_or_else(|| missing("data", "data"))?;
    let method = fields.str("method").unwrap_or("POST").to_owned();
    let (urls, deliveries) = webhook_deliveries(
        urls,
        "urls",
        Some(data),
        headers(fields.get("headers"))?,
        method.clone(),
    )?;
    let results = dispatch(&ctx, &session, deliveries, wait(&fields)).await?;
    let mut out = report("urls", urls, results);
    out["method"] = json!(method.to_ascii_uppercase());
    Ok(Json(out))
}

/// Browser subscriptions from a `subscriptions` list or a single `endpoint`/`p256dh`/`auth`.
fn web_push_subscriptions(
    fields: &Fields,
    list_field: &str,
) -> ApiResult<Vec<(String, String, String)>> {
    let from = |m: &Map<String, Value>| -> ApiResult<(String, String, String)> {
        let get = |k: &str, what: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| missing(what, k))
        };
        Ok((
            get("endpoint", "endpoint")?,
            get("p256dh", "p256dh key")?,
            get("auth", "auth secret")?,
        ))
    };
    let subs = match fields.get(list_field) {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("\"{list_field}\" must be a list of objects"))
                    })
                    .and_then(from)
            })
            .collect::<ApiResult<Vec<_>>>()?,
        _ => vec![from(&fields.all)?],
    };
    for (endpoint, _, _) in &subs {
        validate_target(TargetKind::WebPush, endpoint)?;
    }
    Ok(subs)
}

fn web_push_deliveries(
    subs: Vec<(String, String, String)>,
    message: Option<&Value>,
    vapid_key: Option<String>,
    vapid_email: Option<String>,
) -> (Vec<String>, Vec<NewDelivery>) {
    let text = web_push_text(message);
    let endpoints = subs.iter().map(|s| s.0.clone()).collect();
    let deliveries = subs
        .into_iter()
        .map(|(endpoint, p256dh, auth)| NewDelivery {
            kind: DeliveryKind::WebPush,
            target: endpoint.clone(),
            payload: payload::to_json(&WebPushPayload {
                endpoint,
                p256dh,
                auth,
                payload: text.clone(),
                vapid_key: vapid_key.clone(),
                vapid_email: vapid_email.clone(),
            }),
        })
        .collect();
    (endpoints, deliveries)
}

async fn send_web_push(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let subs = web_push_subscriptions(&fields, "subscriptions")?;
    let (endpoints, deliveries) = web_push_deliveries(
        subs,
        fields.get("message").or_else(|| fields.get("data")),
        fields.str("vapid_private_key").map(str::to_owned),
        fields.str("vapid_email").map(str::to_owned),
    );
    let results = dispatch(&ctx, &session, deliveries, wait(&fields)).await?;
    Ok(Json(report("endpoints", endpoints, results)))
}

/// `POST /messaging[/send]`: several adapters at once, results keyed by adapter.
async fn send_many(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let adapters = strings(fields.get("adapters"));
    if adapters.is_empty() {
        return Err(missing("adapters", "adapters"));
    }
    let data = fields.get("data").filter(|v| !v.is_null());
    let mut out = Map::new();
    for name in adapters {
        let canonical = match name.to_ascii_lowercase().as_str() {
            "apn" | "apns" => "apn",
            "email" | "smtp" => "email",
            "webhook" | "web" => "webhook",
            "web_push" | "webpush" => "web_push",
            _ => {
                out.insert(
                    name.clone(),
                    json!({"success": false, "error": format!("Unknown adapter: {name}")}),
                );
                continue;
            }
        };
        let prepared = match canonical {
            "apn" => {
                if strings(fields.get("apn_tokens")).is_empty() {
                    continue;
                }
                apn_deliveries(&fields, "apn_tokens", "apn_message", data)
                    .map(|(t, d)| ("tokens", t, d))
            }
            "email" => {
                if strings(fields.get("email_to")).is_empty() {
                    continue;
                }
                let body = fields
                    .str("email_body")
                    .map(str::to_owned)
                    .or_else(|| data.map(|d| serde_json::to_string_pretty(d).unwrap_or_default()));
                email_deliveries(
                    &fields,
                    "email_to",
                    Some(
                        fields
                            .str("email_subject")
                            .unwrap_or("Notification")
                            .to_owned(),
                    ),
                    Some(body.unwrap_or_default()),
                    fields.flag("email_html").unwrap_or(false),
                    None,
                )
                .map(|(t, d)| ("recipients", t, d))
            }
            "webhook" => {
                let urls = strings(fields.get("webhook_urls"));
                if urls.is_empty() {
                    continue;
                }
                let body = data.cloned().unwrap_or_else(|| json!({}));
                headers(fields.get("webhook_headers"))
                    .and_then(|h| {
                        webhook_deliveries(
                            urls,
                            "webhook_urls",
                            Some(body),
                            h,
                            fields.str("webhook_method").unwrap_or("POST").to_owned(),
                        )
                    })
                    .map(|(t, d)| ("urls", t, d))
            }
            _ => {
                if !matches!(fields.get("web_push_subscriptions"), Some(Value::Array(l)) if !l.is_empty())
                {
                    continue;
                }
                web_push_subscriptions(&fields, "web_push_subscriptions").map(|subs| {
                    let (t, d) = web_push_deliveries(
                        subs,
                        fields.get("web_push_message").or(data),
                        None,
                        None,
                    );
                    ("endpoints", t, d)
                })
            }
        };
        let result = match prepared {
            Ok((key, targets, deliveries)) => {
                let results = dispatch(&ctx, &session, deliveries, wait(&fields)).await?;
                report(key, targets, results)
            }
            Err(e) => json!({"success": false, "error": e.message}),
        };
        out.insert(canonical.to_owned(), result);
    }
    Ok(Json(Value::Object(out)))
}

/// The app's recent deliveries (newest first), optionally of one status.
async fn list_deliveries(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let status = match fields.str("status") {
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status {s:?} is not pending, delivered or failed"))
        })?),
        None => None,
    };
    let count = fields
        .str("count")
        .and_then(|c| c.parse().ok())
        .unwrap_or(100u32)
        .min(1000);
    let store = ctx.hub.apps.store();
    let list = store
        .list_deliveries(&session.app.id, status, count)
        .await?;
    let counts = store.delivery_counts(&session.app.id).await?;
    Ok(Json(json!({"deliveries": list, "counts": counts})))
}
