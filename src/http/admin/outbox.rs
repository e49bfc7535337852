//! One app's outbox, as the operator looks after it: the deliveries (pending, delivered, failed
//! with the reason), "retry now" and "give up".
//!
//! Retrying makes a pending or failed delivery due at once (the worker finds it within its
//! poll interval) and gives a failed one another attempt; giving up marks a pending delivery
//! failed with the reason "given up by operator". A delivery being attempted at that moment
//! finishes its attempt, whose outcome is recorded after the operator's change.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::Operator;
use crate::http::ServerContext;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{DeliveryRecord, DeliveryStatus};

/// Deliveries listed when the request does not say, and the most it may ask for.
const DEFAULT_COUNT: u32 = 100;
const MAX_COUNT: u32 = 1000;

/// The reason a delivery given up from the dashboard shows.
pub const GIVEN_UP: &str = "given up by operator";

pub async fn list(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path(app_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let app = operator.app(&ctx, &app_id).await?;
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    let status = match param("status") {
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("status: {s:?} is not pending, delivered or failed"))
        })?),
        None => None,
    };
    let count = match param("count") {
        Some(c) => c.parse::<u32>().map_err(|_| {
            ApiError::bad_request(format!("count: {c:?} is not a non-negative integer"))
        })?,
        None => DEFAULT_COUNT,
    }
    .min(MAX_COUNT);
    let store = ctx.hub.apps.store();
    let deliveries = store.list_deliveries(&app.id, status, count).await?;
    let counts = store.delivery_counts(&app.id).await?;
    Ok(Json(json!({"deliveries": deliveries, "counts": counts})))
}

pub async fn retry(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path((app_id, delivery)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryRecord>> {
    let app = operator.app(&ctx, &app_id).await?;
    let id = delivery_id(&delivery)?;
    match ctx.hub.apps.store().retry_delivery(&app.id, id).await? {
        Some(record) => {
            tracing::info!(app_id = %app.id, delivery = id, "delivery retried by the operator");
            Ok(Json(record))
        }
        None => Err(unchanged(&ctx, &app.id, id, "retried", "pending or failed").await),
    }
}

pub async fn give_up(
    State(ctx): State<ServerContext>,
    operator: Operator,
    Path((app_id, delivery)): Path<(String, String)>,
) -> ApiResult<Json<DeliveryRecord>> {
    let app = operator.app(&ctx, &app_id).await?;
    let id = delivery_id(&delivery)?;
    match ctx
        .hub
        .apps
        .store()
        .give_up_delivery(&app.id, id, GIVEN_UP)
        .await?
    {
        Some(record) => {
            tracing::info!(app_id = %app.id, delivery = id, "delivery given up by the operator");
            Ok(Json(record))
        }
        None => Err(unchanged(&ctx, &app.id, id, "given up", "pending").await),
    }
}

fn delivery_id(text: &str) -> ApiResult<i64> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("delivery id {text:?} is not a number")))
}

/// Why a delivery was left as it was: it is not the app's (404) or not in a state that allows
/// it (409, naming its status).
async fn unchanged(
    ctx: &ServerContext,
    app_id: &str,
    id: i64,
    done: &str,
    allowed: &str,
) -> ApiError {
    match ctx.hub.apps.store().get_deliveries(app_id, &[id]).await {
        Ok(found) => match found.first() {
            Some(d) => ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "delivery {id} is {}: only {allowed} deliveries can be {done}",
                    d.status.as_str()
                ),
            ),
            None => ApiError::not_found(format!("app {app_id} has no delivery {id}")),
        },
        Err(e) => e.into(),
    }
}
