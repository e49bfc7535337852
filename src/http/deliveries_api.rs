//! The outbox as an app sees it (`GET /deliveries`): its recent deliveries, newest first,
//! and how many it has by status. Only ever the session's app's: the store scopes both.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ServerContext;
use super::error::{ApiError, ApiResult};
use super::extract::{Fields, Session};
use crate::store::DeliveryStatus;

/// Deliveries listed when the request does not say (or says 0).
const DEFAULT_COUNT: u32 = 100;

pub fn router() -> Router<ServerContext> {
    Router::new().route("/deliveries", get(list_deliveries))
}

/// `?status=` (pending, delivered or failed) and `?count=` (1 to
/// [`MAX_COUNT`](super::extract::MAX_COUNT); 0 is the default) narrow the list; the counts are
/// always the app's totals.
async fn list_deliveries(
    State(ctx): State<ServerContext>,
    session: Session,
    fields: Fields,
) -> ApiResult<Json<Value>> {
    let status = match fields.str("status") {
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status {s:?} is not pending, delivered or failed"))
        })?),
        None => None,
    };
    let count = fields.count(DEFAULT_COUNT)?;
    let store = ctx.hub.apps.store();
    let deliveries = store
        .list_deliveries(&session.app.id, status, count)
        .await?;
    let counts = store.delivery_counts(&session.app.id).await?;
    Ok(Json(json!({"deliveries": deliveries, "counts": counts})))
}
