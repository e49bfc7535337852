//! What every request passes through, whatever its route: the operator-only gate in front of
//! `/metrics` and the health details, and the latency histogram by route.
//!
//! They are layers rather than handler code so a route cannot forget them.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ServerContext;
use super::error::ApiError;
use crate::listener::ListenerRole;

/// Routes that tell an outsider too much (every app's traffic, the server's internals): served
/// freely on the operator's listener (`admin_addr`), elsewhere only with the admin token.
const OPERATOR_ONLY: &[&str] = &["/metrics", "/health/detailed"];

pub async fn operator_only(
    State(ctx): State<ServerContext>,
    request: Request,
    next: Next,
) -> Response {
    if !OPERATOR_ONLY.contains(&request.uri().path())
        || request.extensions().get::<ListenerRole>() == Some(&ListenerRole::Operator)
    {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&ctx.admin.token, presented) {
        (Some(expected), Some(given)) if crate::auth::constant_time_eq(expected, given) => {
            next.run(request).await
        }
        (None, _) => ApiError::forbidden(
            "this route is for the operator: serve it on a private listener with \
             PUSHI_ADMIN_ADDR, or set PUSHI_ADMIN_TOKEN and send it as a Bearer token",
        )
        .into_response(),
        _ => ApiError::unauthorized("this route needs \"Authorization: Bearer <admin token>\"")
            .into_response(),
    }
}

/// Records how long each routed request took, under its route template (never the path a
/// client sent, so the series stay bounded).
pub async fn request_latency(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    if let Some(route) = route {
        crate::metrics::http_request(&route, &method, started.elapsed());
    }
    response
}
