//! The HTTP side: routers composed into one, served on every listener.
//!
//! Each API is a small router of its own (`pusher_api`, `health`); this module merges them,
//! sends WebSocket upgrades on any other path to [`crate::ws`], and answers everything else
//! with a JSON 404.

pub mod error;
pub mod health;
pub mod pusher_api;
pub mod pushi_api;
pub mod signed;

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::hub::Hub;
use error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct ServerContext {
    pub hub: Arc<Hub>,
    pub metrics: PrometheusHandle,
    pub admin: pushi_api::AdminPolicy,
}

pub fn router(ctx: ServerContext) -> Router {
    Router::new()
        .merge(pusher_api::router())
        .merge(pushi_api::router())
        .merge(health::router())
        .fallback(fallback)
        .layer(axum::middleware::from_fn(error::log_rejections))
        // pushi.js logs in with cookies from other origins: mirror the origin, allow credentials.
        .layer(tower_http::cors::CorsLayer::very_permissive())
        .with_state(ctx)
}

/// WebSocket upgrades on any path (the path picks the app and dialect); JSON 404 otherwise.
async fn fallback(State(ctx): State<ServerContext>, request: Request) -> Response {
    let is_upgrade = request
        .headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return ApiError::not_found(format!(
            "no route for {} {}",
            request.method(),
            request.uri().path()
        ))
        .into_response();
    }
    let uri = request.uri().clone();
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &ctx).await {
        Ok(ws) => crate::ws::upgrade(ctx.hub.clone(), ws, uri).await,
        Err(rejection) => {
            ApiError::bad_request(format!("bad WebSocket upgrade: {rejection}")).into_response()
        }
    }
}
