//! The one error type of every HTTP route, and how it becomes a response.
//!
//! Every refusal is a JSON body saying what was wrong, with the matching status, and one
//! structured log line. The body uses Pushi's error envelope (`result`, `name`, `message`,
//! `code`), which also suits Pusher SDKs: they only read the status and show the text.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::hub::PublishError;
use crate::notify::NotifyError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::TooLarge { .. } => Self::too_large(e.to_string()),
            PublishError::Invalid(_) => Self::bad_request(e.to_string()),
            PublishError::Store(store) => store.into(),
        }
    }
}

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::Invalid(message) => Self::bad_request(message),
            NotifyError::Forbidden(message) => Self::forbidden(message),
            NotifyError::Store(store) => store.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => Self::bad_request(e.to_string()),
            _ => {
                tracing::error!(error = %e, "store error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is unavailable; try again",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let name = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .replace(' ', "");
        metrics::counter!(crate::metrics::HTTP_REJECTED, "status" => self.status.as_u16().to_string())
            .increment(1);
        let body = json!({
            "result": "error",
            "name": name,
            "message": self.message,
            "code": self.status.as_u16(),
        });
        let mut response = (self.status, Json(body)).into_response();
        response.extensions_mut().insert(Rejection(self.message));
        response
    }
}

/// The message of a refused request, left on the response for [`log_rejections`].
#[derive(Clone)]
struct Rejection(String);

/// Logs one structured line per refused request: method, path, status and why.
pub async fn log_rejections(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let message = response
            .extensions()
            .get::<Rejection>()
            .map(|r| r.0.as_str())
            .unwrap_or("");
        if status.is_server_error() {
            tracing::error!(%method, path, status = status.as_u16(), message, "request failed");
        } else {
            tracing::info!(%method, path, status = status.as_u16(), message, "request rejected");
        }
    }
    response
}

pub type ApiResult<T> = Result<T, ApiError>;
