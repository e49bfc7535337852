//! Health and metrics endpoints, for load balancers and monitoring. No authentication.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ServerContext;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router() -> Router<ServerContext> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/detailed", get(detailed))
        .route("/metrics", get(metrics))
        .route("/", get(info))
        .route("/info", get(info))
        .route("/versions", get(versions))
}

/// What this server is, as Pushi's `GET /` and `/info` tell it.
async fn info(State(ctx): State<ServerContext>) -> Json<Value> {
    Json(json!({
        "name": "pushi",
        "service": "pushi",
        "version": VERSION,
        "protocols": ["pusher-7", "pushi"],
        "connections": ctx.hub.live_sockets(),
    }))
}

async fn versions() -> Json<Value> {
    Json(json!({"api_version": 1, "version": VERSION}))
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "service": "pushi", "version": VERSION}))
}

async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready means the store answers (without it no app can be looked up) and, in a cluster, the
/// broker is connected (without it this node is cut off from the others).
async fn ready(State(ctx): State<ServerContext>) -> impl IntoResponse {
    if let Some(cluster) = &ctx.cluster
        && !cluster.connected()
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "error",
                "ready": false,
                "message": "Cluster broker not connected: this node cannot reach the others",
            })),
        );
    }
    match ctx.hub.apps.store().ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ok", "ready": true}))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "error",
                "ready": false,
                "message": format!("Database not ready: {e}"),
            })),
        ),
    }
}

async fn detailed(State(ctx): State<ServerContext>) -> Json<Value> {
    let started = std::time::Instant::now();
    let database = match ctx.hub.apps.store().ping().await {
        Ok(()) => json!({
            "status": "ok",
            "latency_ms": (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0,
        }),
        Err(e) => json!({"status": "error", "error": e.to_string()}),
    };
    let cluster = match &ctx.cluster {
        Some(c) => json!({
            "status": if c.connected() { "ok" } else { "error" },
            "node": c.config.node_id,
            "peers": c.peers(),
        }),
        None => json!({"status": "ok", "mode": "single node"}),
    };
    let ok = database["status"] == "ok" && cluster["status"] == "ok";
    Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "service": "pushi",
        "version": VERSION,
        "timestamp": crate::clock::now_unix(),
        "checks": {
            "database": database,
            "websocket": {"status": "ok", "connections": ctx.hub.live_sockets()},
            "cluster": cluster,
        },
    }))
}

async fn metrics(State(ctx): State<ServerContext>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}
