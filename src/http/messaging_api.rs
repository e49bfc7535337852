//! Pushi's direct messaging REST API: one message to recipients named in the request, no
//! subscription needed. `/messaging/{apn,email,webhook,web_push}` send one kind;
//! `POST /messaging` (or `/messaging/send`) several kinds at once, with results by kind.
//!
//! Each handler reads the request into a [`Content`] and its [`Recipient`]s; the
//! [`Notifier`](crate::notify::Notifier) checks them, records one delivery per recipient and,
//! unless `wait=0`, waits briefly for the first attempts, so the reply can say how each went.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use super::extract::{Fields, Session};
use crate::notify::NotifyError;
use crate::notify::compose::{Content, Recipient, web_push_text};
use crate::notify::payload::SmtpOverride;
use crate::store::{DeliveryRecord, DeliveryStatus};

pub fn router() -> Router<ServerContext> {
    Router::new()
        .route("/messaging", post(send_many))
        .route("/messaging/send", post(send_many))
        .route("/messaging/apn", post(send_apn))
        .route("/messaging/email", post(send_email))
        .route("/messaging/webhook", post(send_webhook))
        .route("/messaging/web_push", post(send_web_push))
}

/// A direct message as read from a request.
struct Message {
    content: Content,
    recipients: Vec<Recipient>,
    /// The reply's key for the recipients: `tokens`, `recipients`, `urls` or `endpoints`.
    listed_as: &'static str,
}

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

fn wait(fields: &Fields) -> bool {
    fields.flag("wait").unwrap_or(true)
}

/// Sends a message and reports each delivery:
/// `{"success", <listed_as>: [...], "results": [...]}`, success meaning nothing failed yet.
async fn send(
    ctx: &ServerContext,
    session: &Session,
    message: Message,
    wait: bool,
) -> Result<Value, NotifyError> {
    let deliveries = ctx
        .notifier
        .send(&session.app.id, &message.content, &message.recipients, wait)
        .await?;
    let results: Vec<Value> = deliveries.iter().map(result_json).collect();
    let targets: Vec<&str> = message
        .recipients
        .iter()
        .map(|r| r.target.as_str())
        .collect();
    let success = results.iter().all(|r| r["status"] != "failed");
    Ok(json!({"success": success, message.listed_as: targets, "results": results}))
}

fn result_json(d: &DeliveryRecord) -> Value {
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
}

// One kind at a time ---------------------------------------------------------------------

async fn send_apn(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let message = apn_message(&fields, "tokens", "message", None)?;
    Ok(Json(send(&ctx, &session, message, wait(&fields)).await?))
}

async fn send_email(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let message = email_message(
        &fields,
        "to",
        fields.str("subject").map(str::to_owned),
        fields.str("body").map(str::to_owned),
        fields.flag("html").unwrap_or(false),
        smtp_override(&fields),
    )?;
    Ok(Json(send(&ctx, &session, message, wait(&fields)).await?))
}

async fn send_webhook(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let data = fields
        .get("data")
        .filter(|v| !v.is_null())
        .cloned()
        .ok_or_else(|| missing("data", "data"))?;
    let mut urls = strings(fields.get("urls"));
    urls.extend(strings(fields.get("url")));
    if urls.is_empty() {
        return Err(missing("webhook URL", "urls"));
    }
    let method = fields.str("method").unwrap_or("POST").to_ascii_uppercase();
    let message = webhook_message(urls, data, headers(fields.get("headers")), method.clone());
    let mut out = send(&ctx, &session, message, wait(&fields)).await?;
    out["method"] = json!(method);
    Ok(Json(out))
}

async fn send_web_push(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let message = web_push_message(
        &fields,
        "subscriptions",
        fields.get("message").or_else(|| fields.get("data")),
        fields.str("vapid_private_key").map(str::to_owned),
        fields.str("vapid_email").map(str::to_owned),
    )?;
    Ok(Json(send(&ctx, &session, message, wait(&fields)).await?))
}

// Several kinds at once ------------------------------------------------------------------

/// `POST /messaging[/send]`: the `adapters` named, each reading its own prefixed fields
/// (`apn_tokens`, `email_to`, ...) with `data` as the common message; results by adapter.
/// An adapter without recipients is skipped; one that is refused reports why. The targets of
/// every adapter count together against the per-request cap.
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
    let mut messages = Vec::new();
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
        match adapter_message(canonical, &fields, data) {
            None => {}
            Some(Ok(message)) => messages.push((canonical, message)),
            Some(Err(e)) => {
                out.insert(
                    canonical.to_owned(),
                    json!({"success": false, "error": e.message}),
                );
            }
        }
    }
    let targets = messages.iter().map(|(_, m)| m.recipients.len()).sum();
    ctx.notifier.check_request_size(targets)?;
    for (canonical, message) in messages {
        let result = match send(&ctx, &session, message, wait(&fields)).await {
            Ok(report) => report,
            Err(NotifyError::Store(e)) => return Err(e.into()),
            Err(refused) => json!({"success": false, "error": refused.to_string()}),
        };
        out.insert(canonical.to_owned(), result);
    }
    Ok(Json(Value::Object(out)))
}

/// One adapter's message in a `POST /messaging` request; `None` if it names no recipients.
fn adapter_message(
    adapter: &str,
    fields: &Fields,
    data: Option<&Value>,
) -> Option<ApiResult<Message>> {
    match adapter {
        "apn" => {
            if strings(fields.get("apn_tokens")).is_empty() {
                return None;
            }
            Some(apn_message(fields, "apn_tokens", "apn_message", data))
        }
        "email" => {
            if strings(fields.get("email_to")).is_empty() {
                return None;
            }
            let body = fields
                .str("email_body")
                .map(str::to_owned)
                .or_else(|| data.map(|d| serde_json::to_string_pretty(d).unwrap_or_default()));
            let subject = fields.str("email_subject").unwrap_or("Notification");
            Some(email_message(
                fields,
                "email_to",
                Some(subject.to_owned()),
                Some(body.unwrap_or_default()),
                fields.flag("email_html").unwrap_or(false),
                None,
            ))
        }
        "webhook" => {
            let urls = strings(fields.get("webhook_urls"));
            if urls.is_empty() {
                return None;
            }
            let method = fields.str("webhook_method").unwrap_or("POST");
            Some(Ok(webhook_message(
                urls,
                data.cloned().unwrap_or_else(|| json!({})),
                headers(fields.get("webhook_headers")),
                method.to_ascii_uppercase(),
            )))
        }
        _ => {
            if !matches!(fields.get("web_push_subscriptions"), Some(Value::Array(l)) if !l.is_empty())
            {
                return None;
            }
            let text = fields.get("web_push_message").or(data);
            Some(web_push_message(
                fields,
                "web_push_subscriptions",
                text,
                None,
                None,
            ))
        }
    }
}

// Reading each kind ----------------------------------------------------------------------

fn apn_message(
    fields: &Fields,
    tokens_field: &str,
    message_field: &str,
    fallback: Option<&Value>,
) -> ApiResult<Message> {
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
    Ok(Message {
        content: Content::Apn {
            message,
            sandbox: fields.flag("sandbox"),
        },
        recipients: tokens.into_iter().map(Recipient::new).collect(),
        listed_as: "tokens",
    })
}

fn email_message(
    fields: &Fields,
    to_field: &str,
    subject: Option<String>,
    body: Option<String>,
    html: bool,
    smtp: Option<SmtpOverride>,
) -> ApiResult<Message> {
    let to = strings(fields.get(to_field));
    if to.is_empty() {
        return Err(missing("recipient", to_field));
    }
    Ok(Message {
        content: Content::Email {
            subject: subject.ok_or_else(|| missing("subject", "subject"))?,
            body: body.ok_or_else(|| missing("body", "body"))?,
            html,
            smtp,
        },
        recipients: to.into_iter().map(Recipient::new).collect(),
        listed_as: "recipients",
    })
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

fn webhook_message(
    urls: Vec<String>,
    data: Value,
    headers: BTreeMap<String, String>,
    method: String,
) -> Message {
    Message {
        content: Content::Webhook {
            method,
            headers,
            body: Some(data),
        },
        recipients: urls.into_iter().map(Recipient::new).collect(),
        listed_as: "urls",
    }
}

/// Request headers for a webhook: a JSON object's entries, values as text.
fn headers(value: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = value else {
        return BTreeMap::new();
    };
    map.iter()
        .map(|(name, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// Browser subscriptions from a `subscriptions` list or a single `endpoint`/`p256dh`/`auth`.
fn web_push_message(
    fields: &Fields,
    list_field: &str,
    text: Option<&Value>,
    vapid_key: Option<String>,
    vapid_email: Option<String>,
) -> ApiResult<Message> {
    let browser = |m: &Map<String, Value>| -> ApiResult<Recipient> {
        let get = |k: &str, what: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| missing(what, k))
        };
        Ok(Recipient::browser(
            get("endpoint", "endpoint")?,
            get("p256dh", "p256dh key")?,
            get("auth", "auth secret")?,
        ))
    };
    let recipients = match fields.get(list_field) {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("\"{list_field}\" must be a list of objects"))
                    })
                    .and_then(browser)
            })
            .collect::<ApiResult<Vec<_>>>()?,
        _ => vec![browser(&fields.all)?],
    };
    Ok(Message {
        content: Content::WebPush {
            text: web_push_text(text),
            vapid_key,
            vapid_email,
        },
        recipients,
        listed_as: "endpoints",
    })
}
