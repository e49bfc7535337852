//! Apps as the operator manages them: list, create (admin only), change any field or setting,
//! rotate the secret.
//!
//! Changes go through [`App::with_changes`], so the rules (unknown keys, types, ranges, URL
//! schemes) are the same as for `pushi apps set` and the configuration file, and a refusal
//! names the field. Apps declared in the configuration cannot be changed at run time: the
//! file would undo it at the next start, so the API refuses with 409 and says where to change
//! them.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Operator, json_object};
use crate::app::{App, NewApp, random_hex64};
use crate::clock::now_unix;
use crate::http::ServerContext;
use crate::http::error::{ApiError, ApiResult};

/// An app as the admin API shows it. The secret is included: whoever may call this API
/// either holds it already (the app's own credentials) or may read it anyway (the admin).
/// Delivery secrets (SMTP password, APNs and VAPID keys) are only ever reported as set.
pub fn app_json(ctx: &ServerContext, app: &App) -> Value {
    let connections = ctx
        .hub
        .existing_state(&app.id)
        .map_or(0, |s| s.connection_count());
    json!({
        "id": app.id,
        "name": app.name,
        "description": app.description,
        "enabled": app.enabled,
        "key": app.key,
        "secret": app.secret,
        "ident": app.ident,
        "configured": ctx.hub.apps.is_static(&app.id),
        "created": app.created,
        "modified": app.modified,
        "connections": connections,
        "settings": app.settings.public_view(),
    })
}

/// The refusal to change an app declared in the configuration at run time.
pub(crate) fn configured_refusal(id: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "app {id} is declared in the configuration (TOML or PUSHI_APP_*): {what} there and restart"
        ),
    )
}

pub async fn list(State(ctx): State<ServerContext>, operator: Operator) -> ApiResult<Json<Value>> {
    let apps: Vec<Arc<App>> = match &operator {
        Operator::Admin => ctx.hub.apps.all().await?,
        Operator::App(own) => vec![operator.app(&ctx, &own.id).await?],
    };
    let apps: Vec<Value> = apps.iter().map(|a| app_json(&ctx, a)).collect();
    Ok(Json(json!({ "apps": apps })))
}

/// `POST /admin/api/apps`: `name` (required), `description`, `enabled` and any setting.
pub async fn create(
    State(ctx): State<ServerContext>,
    operator: Operator,
    body: Bytes,
) -> ApiResult<Response> {
    operator.require_admin("creating an app")?;
    let fields = json_object(&body)?;
    if !fields.contains_key("name") {
        return Err(ApiError::bad_request("name: required"));
    }
    // Checked on a draft first, so nothing is stored unless every field is valid.
    let draft = NewApp::default()
        .into_app()
        .with_changes(&fields)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let app = ctx.hub.apps.create_from_draft(draft).await?;
    tracing::info!(app_id = %app.id, name = %app.name, "app created from the admin API");
    Ok((StatusCode::CREATED, Json(app_json(&ctx, &app))).into_response())
}

pub async fn show(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = operator.app(&ctx, &app_id).await?;
    Ok(Json(app_json(&ctx, &app)))
}

/// `PATCH /admin/api/apps/{id}`: the fields and settings named, nothing else. Only the admin
/// may enable or disable an app (a disabled app's own credentials are refused).
pub async fn change(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let app = operator.app(&ctx, &app_id).await?;
    let changes = json_object(&body)?;
    if changes.contains_key("enabled") {
        operator.require_admin("enabling or disabling an app")?;
    }
    if ctx.hub.apps.is_static(&app.id) {
        return Err(configured_refusal(&app.id, "change its settings"));
    }
    let changed = app
        .with_changes(&changes)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let app = ctx.hub.apps.update(changed).await?;
    ctx.hub.state(&app);
    tracing::info!(app_id = %app.id, fields = ?changes.keys().collect::<Vec<_>>(), "app changed from the admin API");
    Ok(Json(app_json(&ctx, &app)))
}

/// `POST /admin/api/apps/{id}/secret`: a new random secret. Signatures made with the old one
/// stop working at once on this node (within the registry's refresh on the others); open
/// connections stay open.
pub async fn rotate_secret(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let app = operator.app(&ctx, &app_id).await?;
    if ctx.hub.apps.is_static(&app.id) {
        return Err(configured_refusal(&app.id, "change its secret"));
    }
    let mut rotated = (*app).clone();
    rotated.secret = random_hex64();
    rotated.modified = now_unix();
    let app = ctx.hub.apps.update(rotated).await?;
    ctx.hub.state(&app);
    tracing::info!(app_id = %app.id, "app secret rotated from the admin API");
    Ok(Json(app_json(&ctx, &app)))
}
