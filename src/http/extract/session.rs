//! [`Session`]: the app a Pushi REST request is logged into, from its session token.
//!
//! The token may come in a header, the query string, a cookie or (through
//! [`session_from_form`]) a form body, as Pushi's clients send it.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::app::App;
use crate::http::ServerContext;
use crate::http::error::ApiError;
use crate::hub::AppState;

/// The app a Pushi session is logged into. Routes taking it answer 403 without a session.
pub struct Session {
    pub app: Arc<App>,
    pub state: Arc<AppState>,
}

/// The session token: header `X-Session-Id`, query `sid`/`session_id`/`_sid`, or cookie `sid`.
pub fn session_token(parts: &Parts) -> Option<String> {
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

/// Pushi also reads the session token from a form body's `sid` field (the Python client
/// sends it that way on bodiless POSTs): lift it into `X-Session-Id` so [`Session`], which
/// only sees the request head, finds it.
pub async fn session_from_form(request: Request, next: axum::middleware::Next) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let (mut parts, body) = request.into_parts();
    if !is_form || session_token(&parts).is_some() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let bytes = match axum::body::to_bytes(body, super::MAX_BODY_BYTES).await {
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
