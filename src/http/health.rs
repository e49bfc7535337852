//! Health and metrics endpoints, for load balancers and monitoring. No authentication, but
//! for `/metrics` and `/health/detailed`, which are the operator's (see `layers`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ServerContext;
use crate::store::TargetKind;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub fn router(ctx: ServerContext) -> Router<ServerContext> {
    // Every app's traffic and the server's internals: the operator's only.
    let operator = Router::new()
        .route("/health/detailed", get(detailed))
        .route("/metrics", get(metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            ctx,
            super::layers::operator_only,
        ));
    Router::new()
        .merge(operator)
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
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

/// Every check, with the fields the original Pushi's monitoring reads (a superset of them,
/// with the same types): `database.app_count`, `websocket.messages_sent`, `checks.handlers`
/// and a float `timestamp`. Operator-only (see `layers`): it counts every app.
async fn detailed(State(ctx): State<ServerContext>) -> Json<Value> {
    let store = ctx.hub.apps.store();
    let started = std::time::Instant::now();
    // Milliseconds with two decimals, as the original reports them.
    let latency = || (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    let database = match store.ping().await {
        Ok(()) => {
            let mut database = json!({"status": "ok", "latency_ms": latency()});
            if let Ok(apps) = ctx.hub.apps.all().await {
                database["app_count"] = json!(apps.len());
            }
            database
        }
        Err(e) => {
            json!({"status": "error", "error": e.to_string(), "latency_ms": latency()})
        }
    };
    let cluster = match &ctx.cluster {
        Some(c) => json!({
            "status": if c.connected() { "ok" } else { "error" },
            "node": c.config.node_id,
            "peers": c.peers(),
        }),
        None => json!({"status": "ok", "mode": "single node"}),
    };
    let handlers = handlers(&ctx).await;
    let ok = [&database, &cluster, &handlers]
        .iter()
        .all(|check| check["status"] == "ok");
    Json(json!({
        "status": if ok { "ok" } else { "degraded" },
        "service": "pushi",
        "version": VERSION,
        "timestamp": crate::clock::now_unix_f64(),
        "checks": {
            "database": database,
            "websocket": {
                "status": "ok",
                "connections": ctx.hub.live_sockets(),
                "messages_sent": ctx.hub.frames_sent(),
            },
            "handlers": handlers,
            "cluster": cluster,
        },
    }))
}

/// Pushi's `handlers` check: per offline-delivery kind (Pushi's handler names), how many
/// targets are subscribed and in how many apps, plus the outbox's pending deliveries.
async fn handlers(ctx: &ServerContext) -> Value {
    let store = ctx.hub.apps.store();
    let counts = match store.target_counts().await {
        Ok(counts) => counts,
        Err(e) => return json!({"status": "degraded", "error": e.to_string(), "handlers": []}),
    };
    // In the original's order.
    let kinds = [
        TargetKind::Apn,
        TargetKind::Smtp,
        TargetKind::Web,
        TargetKind::WebPush,
    ];
    let handlers: Vec<Value> = kinds
        .iter()
        .map(|kind| {
            let count = counts.iter().find(|c| c.kind == *kind);
            json!({
                "name": kind.as_str(),
                "status": "ok",
                "stats": {
                    "subscription_count": count.map_or(0, |c| c.targets),
                    "app_count": count.map_or(0, |c| c.apps),
                },
            })
        })
        .collect();
    let mut out = json!({"status": "ok", "handlers": handlers});
    if let Ok(pending) = store.pending_deliveries().await {
        out["pending_deliveries"] = json!(pending);
    }
    out
}

async fn metrics(State(ctx): State<ServerContext>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        ctx.metrics.render(),
    )
}
