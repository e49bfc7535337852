//! The HTTP side: routers composed into one, served on every listener.
//!
//! Each API is a small router of its own: Pusher's HTTP API (`pusher_api`), Pushi's REST API
//! (`pushi_api`) and its offline-delivery parts (`targets_api`, `messaging_api`,
//! `deliveries_api`), `health`, and the operator's side: the admin API (`admin`), the
//! dashboard's embedded page (`dashboard`) and the API description (`openapi`). Handlers take
//! checked input from the [`extract`]ors, call the hub or the notifier, and render the reply;
//! refusals are [`error::ApiError`]s. This module merges the routers, sends WebSocket upgrades on any path to [`crate::ws`] first, and
//! answers everything unrouted with a JSON 404.

pub mod admin;
pub mod dashboard;
pub mod deliveries_api;
pub mod error;
pub mod extract;
pub mod health;
pub mod layers;
pub mod messaging_api;
pub mod openapi;
pub mod pusher_api;
pub mod pushi_api;
pub mod pushi_json;
pub mod targets_api;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::hub::Hub;
use crate::notify::Notifier;
use error::ApiError;

/// What every handler can reach: one shared [`ServerParts`], so the per-request clones
/// (every layer and `State` extractor takes one) cost one reference count, not seven.
#[derive(Clone)]
pub struct ServerContext(Arc<ServerParts>);

impl ServerContext {
    pub fn new(parts: ServerParts) -> Self {
        Self(Arc::new(parts))
    }
}

impl std::ops::Deref for ServerContext {
    type Target = ServerParts;
    fn deref(&self) -> &ServerParts {
        &self.0
    }
}

/// The server's shared parts, behind [`ServerContext`].
pub struct ServerParts {
    pub hub: Arc<Hub>,
    /// Connection counts, for per-address caps on WebSockets behind trusted proxies.
    pub admission: Arc<crate::listener::Admission>,
    /// Offline delivery: targets and direct messages.
    pub notifier: Arc<Notifier>,
    pub metrics: PrometheusHandle,
    pub admin: pushi_api::AdminPolicy,
    /// Other nodes, in cluster mode.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

pub fn router(ctx: ServerContext) -> Router {
    Router::new()
        .merge(pusher_api::router())
        .merge(pushi_api::router())
        .merge(targets_api::router())
        .merge(messaging_api::router())
        .merge(deliveries_api::router())
        .merge(health::router(ctx.clone()))
        .merge(admin::router())
        .merge(dashboard::router())
        .merge(openapi::router())
        .route_layer(layers::RequestLatencyLayer)
        .fallback(not_found)
        .layer(error::LogRejectionsLayer)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            websocket_upgrades,
        ))
        // pushi.js logs in with cookies from other origins: mirror the origin, allow credentials.
        .layer(tower_http::cors::CorsLayer::very_permissive())
        .with_state(ctx)
}

/// WebSocket upgrades go to [`crate::ws`] whatever their path (the path picks the app and
/// the dialect), before any HTTP route can claim them.
async fn websocket_upgrades(
    State(ctx): State<ServerContext>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let is_upgrade = request
        .headers()
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return next.run(request).await;
    }
    let uri = request.uri().clone();
    // Behind a trusted proxy every client shares the proxy's address: count the client's own
    // (from X-Forwarded-For) against the per-address cap for as long as its socket lives.
    let slot = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) if ctx.admission.is_trusted_proxy(peer.ip()) => {
            let forwarded = request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            let client = ctx.admission.client_ip(peer.ip(), forwarded);
            match ctx.admission.admit_forwarded(client) {
                Ok(slot) => Some(Box::new(slot)),
                Err(_) => {
                    return ApiError::new(
                        axum::http::StatusCode::TOO_MANY_REQUESTS,
                        "too many connections from this address",
                    )
                    .into_response();
                }
            }
        }
        _ => None,
    };
    let (mut parts, _body) = request.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &ctx).await {
        Ok(ws) => crate::ws::upgrade(ctx.hub.clone(), ws, uri, slot).await,
        Err(rejection) => {
            ApiError::bad_request(format!("bad WebSocket upgrade: {rejection}")).into_response()
        }
    }
}

async fn not_found(request: Request) -> Response {
    ApiError::not_found(format!(
        "no route for {} {}",
        request.method(),
        request.uri().path()
    ))
    .into_response()
}
