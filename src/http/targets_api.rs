//! Pushi's delivery-target REST API: webhook URLs (`/webs`), e-mail addresses (`/smtps`),
//! APNs device tokens (`/apns`) and Web Push endpoints (`/web_pushes`) subscribed to
//! channels, and the app's VAPID key (`/vapid_key`), which a browser needs before it can
//! subscribe to Web Push.
//!
//! Every route runs for the session's app. Targets are percent-encoded in paths, so
//! `DELETE /webs/{url}` works for URLs with slashes (the original's could not be routed);
//! `DELETE /webs/{raw url}/{event}`, what the PyPI client sends, works too. The
//! rules (what a valid target is, signatures for private channels, `unsubscribe=1` moving a
//! target) are the [`TargetService`](crate::notify::targets::TargetService)'s.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use super::extract::{Fields, Session};
use super::pushi_json::{record_json, success};
use crate::notify::targets::Subscription;
use crate::notify::web_push;
use crate::store::{NewTarget, TargetKind, TargetRecord};

pub fn router() -> Router<ServerContext> {
    let mut router = Router::new();
    for kind in TargetKind::ALL {
        let base = format!("/{}", collection(kind));
        router = router.route(
            &base,
            get(move |s, st, f| list(kind, s, st, f)).post(move |s, st, f| create(kind, s, st, f)),
        );
        if kind == TargetKind::Web {
            // URLs have slashes: one route takes every form (see `delete_web`).
            router = router.route(&format!("{base}/{{*target}}"), delete(delete_web));
            continue;
        }
        router = router
            .route(
                &format!("{base}/{{target}}"),
                delete(move |s, st, p, f| delete_all(kind, s, st, p, f)),
            )
            .route(
                &format!("{base}/{{target}}/{{event}}"),
                delete(move |s, st, p, f| delete_one(kind, s, st, p, f)),
            );
    }
    router.route("/vapid_key", get(vapid_key))
}

/// The REST collection of a target kind.
fn collection(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Web => "webs",
        TargetKind::Smtp => "smtps",
        TargetKind::Apn => "apns",
        TargetKind::WebPush => "web_pushes",
    }
}

/// The field naming the target, in requests and replies.
fn target_field(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Web => "url",
        TargetKind::Smtp => "email",
        TargetKind::Apn => "token",
        TargetKind::WebPush => "endpoint",
    }
}

/// A target record as Pushi shows it.
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

async fn list(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let records = ctx
        .notifier
        .targets()
        .list(
            &session.app.id,
            kind,
            fields.str(target_field(kind)),
            fields.str("event"),
        )
        .await?;
    Ok(list_json(&records, &session.app.ident))
}

async fn create(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let target = fields.required(target_field(kind))?.to_owned();
    let event = fields.required("event")?.to_owned();
    let (p256dh, browser_secret, signature) = if kind == TargetKind::WebPush {
        // The browser's `auth` secret is in the JSON body, so a private channel's signature
        // (also `auth`, from Pushi's client) is read from the query alone.
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
        (
            Some(body("p256dh")?),
            Some(body("auth")?),
            fields.query("auth"),
        )
    } else {
        (None, None, fields.str("auth"))
    };
    let request = Subscription {
        target: NewTarget {
            kind,
            target,
            event,
            p256dh,
            auth: browser_secret,
        },
        signature: signature.map(str::to_owned),
        exclusive: fields.flag("unsubscribe") == Some(true),
    };
    let record = ctx
        .notifier
        .targets()
        .subscribe(&session.app, request)
        .await?;
    Ok(Json(target_json(&record, &session.app.ident)))
}

/// `DELETE /{collection}/{target}`: every subscription of the target (or only `?event=`'s).
async fn delete_all(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    Path(target): Path<String>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let event = fields.str("event").map(str::to_owned);
    remove(kind, &ctx, &session, &target, event.as_deref(), &fields).await
}

/// `DELETE /{collection}/{target}/{event}`: one subscription.
async fn delete_one(
    kind: TargetKind,
    State(ctx): State<ServerContext>,
    session: Session,
    Path((target, event)): Path<(String, String)>,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    remove(kind, &ctx, &session, &target, Some(&event), &fields).await
}

/// `DELETE /webs/...`: the URL percent-encoded in one segment (`/webs/{url}`,
/// `/webs/{url}/{event}`), or raw, slashes and all, followed by the event, as the PyPI
/// client's `delete_web(url, event)` sends it (`/webs/http://host/hook/news`). A raw URL's
/// own query string cannot be told from the request's, so such URLs need the encoded form.
async fn delete_web(
    State(ctx): State<ServerContext>,
    session: Session,
    uri: Uri,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let kind = TargetKind::Web;
    let rest = uri
        .path()
        .strip_prefix("/webs/")
        .ok_or_else(|| ApiError::not_found("no such route"))?;
    let decode = |segment: &str| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| ApiError::bad_request("the path is not UTF-8 once decoded"))
    };
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [target] => {
            let event = fields.str("event").map(str::to_owned);
            remove(
                kind,
                &ctx,
                &session,
                &decode(target)?,
                event.as_deref(),
                &fields,
            )
            .await
        }
        [target, event] => {
            let event = decode(event)?;
            remove(
                kind,
                &ctx,
                &session,
                &decode(target)?,
                Some(&event),
                &fields,
            )
            .await
        }
        [raw_url @ .., event] => {
            let event = decode(event)?;
            remove(
                kind,
                &ctx,
                &session,
                &raw_url.join("/"),
                Some(&event),
                &fields,
            )
            .await
        }
        [] => Err(ApiError::not_found("no such route")),
    }
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
        .notifier
        .targets()
        .unsubscribe(&session.app.id, kind, target, event)
        .await?;
    match (event, deleted.first()) {
        (None, _) => Ok(list_json(&deleted, &session.app.ident)),
        (Some(_), Some(record)) => Ok(Json(target_json(record, &session.app.ident))),
        (Some(event), None) if fields.flag("force") == Some(true) => Err(ApiError::not_found(
            format!("{target:?} has no subscription to {event:?}"),
        )),
        (Some(_), None) => Ok(success()),
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
