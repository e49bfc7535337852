//! The admin API under `/admin/api`: what the dashboard (and an operator's scripts) use to
//! manage apps, watch them live and look after their outbox.
//!
//! Every route takes an [`Operator`]: the admin token reaches every app, an app's key and
//! secret reach that app alone (see [`auth`]). One file per page of the dashboard: [`apps`]
//! (create, edit, rotate the secret), [`live`] (what is connected and subscribed, the debug
//! stream, publishing), [`outbox`] (deliveries, retry, give up).

pub mod apps;
pub mod auth;
pub mod live;
pub mod outbox;

use axum::body::Bytes;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
pub use auth::Operator;

pub fn router() -> Router<ServerContext> {
    Router::new()
        .route("/admin/api/session", get(session))
        .route("/admin/api/apps", get(apps::list).post(apps::create))
        .route(
            "/admin/api/apps/{app_id}",
            get(apps::show).patch(apps::change),
        )
        .route("/admin/api/apps/{app_id}/secret", post(apps::rotate_secret))
        .route("/admin/api/apps/{app_id}/live", get(live::snapshot))
        .route("/admin/api/apps/{app_id}/stream", get(live::stream))
        .route("/admin/api/apps/{app_id}/events", post(live::publish))
        .route("/admin/api/apps/{app_id}/deliveries", get(outbox::list))
        .route(
            "/admin/api/apps/{app_id}/deliveries/{delivery}/retry",
            post(outbox::retry),
        )
        .route(
            "/admin/api/apps/{app_id}/deliveries/{delivery}/give_up",
            post(outbox::give_up),
        )
}

/// Who the credentials are: what the dashboard asks right after signing in.
async fn session(operator: Operator) -> Json<Value> {
    Json(match operator {
        Operator::Admin => json!({"role": "admin"}),
        Operator::App(app) => json!({"role": "app", "app_id": app.id}),
    })
}

/// A request body that must be a JSON object (an empty body is an empty object).
fn json_object(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}
