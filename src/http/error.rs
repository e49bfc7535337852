//! The one error type of every HTTP route, and how it becomes a response.
//!
//! Every refusal is a JSON body saying what was wrong, with the matching status, and a
//! structured log line. The body uses Pushi's error envelope (`result`, `name`, `message`,
//! `code`), which also suits Pusher SDKs: they only read the status and show the text.
//!
//! Anyone can make the server refuse requests as fast as the network allows, so the log
//! lines are kept from becoming a way to fill the disk: client-supplied strings (the path,
//! the method, the message, which often quotes the request) are clipped with
//! [`logs::clip`], a matched route is logged by its template rather than the path sent, and
//! each kind of line is written at most once per [`LOG_PERIOD`], the next one saying how
//! many were left out ([`Throttle`]). No line carries a query string, a header or a body, so
//! session ids, signatures and auth strings never reach the log.

use std::sync::LazyLock;
use std::time::Duration;

use axum::Json;
use axum::extract::MatchedPath;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::hub::PublishError;
use crate::logs::{self, Throttle};
use crate::notify::NotifyError;
use crate::store::StoreError;

/// How often each kind of refusal may be logged.
pub const LOG_PERIOD: Duration = Duration::from_secs(1);

/// Requests refused as the client's fault (4xx).
static REJECTED: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));
/// Requests that failed on the server's side (5xx).
static FAILED: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));
/// Store errors behind failed requests.
static STORE_FAILED: LazyLock<Throttle> = LazyLock::new(|| Throttle::new(LOG_PERIOD));

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

/// A refused app field or setting: 400, the message naming the field (`smtp_url: ...`).
impl From<crate::app::SettingError> for ApiError {
    fn from(e: crate::app::SettingError) -> Self {
        Self::bad_request(e.to_string())
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
                if let Some(suppressed) = STORE_FAILED.ready() {
                    tracing::error!(error = %e, suppressed, "store error");
                }
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

/// The message of a refused request, left on the response for [`LogRejections`].
#[derive(Clone)]
struct Rejection(String);

/// Logs a structured line per refused request (method, route, status and why), at most one
/// per [`LOG_PERIOD`] for client errors and one for server errors.
///
/// Every request passes through it, so it is a plain tower service rather than
/// `middleware::from_fn` (which boxes the inner route and the future per request).
#[derive(Clone, Copy, Default)]
pub struct LogRejectionsLayer;

impl<S> tower::Layer<S> for LogRejectionsLayer {
    type Service = LogRejections<S>;
    fn layer(&self, inner: S) -> LogRejections<S> {
        LogRejections { inner }
    }
}

#[derive(Clone)]
pub struct LogRejections<S> {
    inner: S,
}

impl<S> tower::Service<axum::extract::Request> for LogRejections<S>
where
    S: tower::Service<axum::extract::Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Logged<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::extract::Request) -> Self::Future {
        // Cheap clones (shared bytes and a shared string), kept for the refusals.
        let method = request.method().clone();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let uri = request.uri().clone();
        Logged {
            inner: self.inner.call(request),
            seen: Some((method, route, uri)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, with what to log if the response is a refusal.
    pub struct Logged<F> {
        #[pin]
        inner: F,
        seen: Option<(axum::http::Method, Option<MatchedPath>, axum::http::Uri)>,
    }
}

impl<F, E> std::future::Future for Logged<F>
where
    F: std::future::Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some((method, route, uri))) = (&output, this.seen.take()) {
            log_rejection(&method, route.as_ref(), &uri, response);
        }
        std::task::Poll::Ready(output)
    }
}

fn log_rejection(
    method: &axum::http::Method,
    route: Option<&MatchedPath>,
    uri: &axum::http::Uri,
    response: &Response,
) {
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return;
    }
    let throttle = if status.is_server_error() {
        &FAILED
    } else {
        &REJECTED
    };
    let Some(suppressed) = throttle.ready() else {
        return;
    };
    let message = response
        .extensions()
        .get::<Rejection>()
        .map(|r| r.0.as_str())
        .unwrap_or("");
    let message = logs::clip(message);
    let method = logs::clip(method.as_str());
    let path = match route {
        Some(route) => logs::clip(route.as_str()),
        None => logs::clip(uri.path()),
    };
    let status = status.as_u16();
    if status >= 500 {
        tracing::error!(%method, %path, status, %message, suppressed, "request failed");
    } else {
        tracing::info!(%method, %path, status, %message, suppressed, "request rejected");
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
