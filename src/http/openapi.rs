//! `GET /openapi.json`: the OpenAPI 3.1 description of the HTTP APIs as this server serves
//! them (Pusher's HTTP API, Pushi's REST API, the admin API, health and metrics).
//!
//! The document is written by hand in `openapi.json` beside this file and embedded; the
//! `openapi` integration test calls every operation it lists on a real server and checks each
//! reply against its schema, so the description cannot drift from the code unnoticed.

use std::sync::OnceLock;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::ServerContext;

/// The document as written; `info.version` is set to this build's version when served.
pub const DOCUMENT: &str = include_str!("openapi.json");

pub fn router() -> Router<ServerContext> {
    Router::new().route("/openapi.json", get(openapi))
}

/// The served document: [`DOCUMENT`] with this build's version.
pub fn document() -> &'static str {
    static SERVED: OnceLock<String> = OnceLock::new();
    SERVED.get_or_init(
        || match serde_json::from_str::<serde_json::Value>(DOCUMENT) {
            Ok(mut doc) => {
                doc["info"]["version"] = env!("CARGO_PKG_VERSION").into();
                doc.to_string()
            }
            Err(_) => DOCUMENT.to_owned(),
        },
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        document(),
    )
}
