//! What requests pass through besides their handler: the operator-only gate in front of
//! `/metrics` and the health details, and the latency histogram by route.
//!
//! They are layers rather than handler code so a route cannot forget them. The latency layer
//! sits on every routed request, so it is a plain tower service (no boxed `Next`, no boxed
//! future, no clone of the inner route per request, as `middleware::from_fn` would cost).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ServerContext;
use super::error::ApiError;
use crate::listener::ListenerRole;

/// For routes that tell an outsider too much (every app's traffic, the server's internals):
/// served freely on the operator's listener (`admin_addr`), elsewhere only with the admin
/// token. [`super::health`] puts it on `/metrics` and `/health/detailed`.
pub async fn operator_only(
    State(ctx): State<ServerContext>,
    request: Request,
    next: Next,
) -> Response {
    if request.extensions().get::<ListenerRole>() == Some(&ListenerRole::Operator) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&ctx.admin.token, presented) {
        (Some(expected), Some(given)) if crate::auth::constant_time_eq(expected, given) => {
            next.run(request).await
        }
        (None, _) => ApiError::forbidden(
            "this route is for the operator: serve it on a private listener with \
             PUSHI_ADMIN_ADDR, or set PUSHI_ADMIN_TOKEN and send it as a Bearer token",
        )
        .into_response(),
        _ => ApiError::unauthorized("this route needs \"Authorization: Bearer <admin token>\"")
            .into_response(),
    }
}

/// Records how long each routed request took, under its route template (never the path a
/// client sent, so the series stay bounded). Applied with `route_layer`, where the router has
/// already put the matched template on the request.
#[derive(Clone, Copy, Default)]
pub struct RequestLatencyLayer;

impl<S> tower::Layer<S> for RequestLatencyLayer {
    type Service = RequestLatency<S>;
    fn layer(&self, inner: S) -> RequestLatency<S> {
        RequestLatency { inner }
    }
}

#[derive(Clone)]
pub struct RequestLatency<S> {
    inner: S,
}

impl<S> tower::Service<Request> for RequestLatency<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Timed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route = request.extensions().get::<MatchedPath>().cloned();
        let method = request.method().clone();
        Timed {
            inner: self.inner.call(request),
            started,
            route,
            method,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response future, timed from the call to the response.
    pub struct Timed<F> {
        #[pin]
        inner: F,
        started: Instant,
        route: Option<MatchedPath>,
        method: Method,
    }
}

impl<F, E> Future for Timed<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        if let Some(route) = this.route.take() {
            crate::metrics::http_request(route.as_str(), this.method, this.started.elapsed());
        }
        Poll::Ready(output)
    }
}
