//! Metric names, per-app metric handles, and the Prometheus recorder behind `GET /metrics`.
//!
//! Every name is written once, here, so a typo cannot split a series. Every series exists from
//! the start (zero before traffic): the global ones when the recorder is installed, an app's
//! when the server starts or the app is first used. Labels are bounded: `app` (one value per
//! tenant), a delivery `kind` and `outcome`, an HTTP `route` template and `method` — never a
//! channel, a user or a socket.
//!
//! Hot paths hold [`AppMetrics`] handles (one atomic add per publish, not a label lookup).

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

// Per app (label `app`).
pub const CONNECTIONS: &str = "pushi_connections";
pub const CONNECTIONS_TOTAL: &str = "pushi_connections_total";
pub const SUBSCRIPTIONS: &str = "pushi_subscriptions";
pub const EVENTS_PUBLISHED: &str = "pushi_events_published_total";
pub const CLIENT_EVENTS: &str = "pushi_client_events_total";
pub const FRAMES_SENT: &str = "pushi_frames_sent_total";
pub const BYTES_SENT: &str = "pushi_bytes_sent_total";
/// Offline deliveries (webhooks of both kinds included) by `app`, `kind` and `outcome`.
pub const DELIVERIES: &str = "pushi_deliveries_total";

// Server-wide.
pub const SLOW_SOCKETS_CLOSED: &str = "pushi_slow_sockets_closed_total";
pub const CLIENT_ERRORS: &str = "pushi_client_errors_total";
pub const HTTP_REJECTED: &str = "pushi_http_rejected_total";
pub const CONNECTIONS_REFUSED: &str = "pushi_connections_refused_total";
pub const DELIVERIES_PENDING: &str = "pushi_deliveries_pending";
pub const CLUSTER_CONNECTED: &str = "pushi_cluster_connected";
pub const CLUSTER_NODES: &str = "pushi_cluster_nodes";
pub const BROKER_ERRORS: &str = "pushi_cluster_broker_errors_total";

// Latencies (seconds).
/// From accepting a publish to the last local socket queue (persistence included), per `app`.
pub const PUBLISH_SECONDS: &str = "pushi_publish_duration_seconds";
/// HTTP API requests by `route` (the route template) and `method`.
pub const HTTP_SECONDS: &str = "pushi_http_request_duration_seconds";
/// How late a delivery attempt starts compared with when it was due.
pub const OUTBOX_LAG_SECONDS: &str = "pushi_outbox_lag_seconds";

/// Delivery kinds (as the store names them) and outcomes, so every combination exists from
/// the start.
pub const DELIVERY_KINDS: &[&str] = &["web", "smtp", "apn", "web_push", "pusher_webhook"];
pub const DELIVERY_OUTCOMES: &[&str] = &["delivered", "retried", "failed"];

/// Bucket bounds in seconds: from a fraction of a millisecond (a local publish) to a minute
/// (a delivery that waited out a back-off).
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// How often the recorder folds recorded latencies into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the global recorder once; later calls return a handle to the same one, so tests
/// that start several servers in one process work.
///
/// The Prometheus recorder keeps every histogram sample until it is folded into buckets,
/// which happens on a scrape or an upkeep: without the upkeep thread started here, a server
/// nobody scrapes would hold every publish's and request's latency forever.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours just renders
            // nothing; the server still works.
            let _ = metrics::set_global_recorder(recorder);
            register_server_series();
            let upkeep = handle.clone();
            // If the thread cannot start the server still works; samples then wait for scrapes.
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// The server-wide series, at zero.
fn register_server_series() {
    for name in [
        SLOW_SOCKETS_CLOSED,
        CLIENT_ERRORS,
        CONNECTIONS_REFUSED,
        BROKER_ERRORS,
    ] {
        metrics::counter!(name).increment(0);
    }
    for name in [DELIVERIES_PENDING, CLUSTER_CONNECTED, CLUSTER_NODES] {
        metrics::gauge!(name).set(0.0);
    }
    // The publish latency is per app (see `AppMetrics`); the outbox is the server's.
    let _ = metrics::histogram!(OUTBOX_LAG_SECONDS);
}

/// Records an HTTP request's duration under its route template.
///
/// Every API call passes here, so the histogram handles are kept per route (one map lookup
/// by `&str`) instead of asking the registry, which builds an owned label set per call.
pub fn http_request(route: &str, method: &axum::http::Method, elapsed: Duration) {
    static BY_ROUTE: std::sync::OnceLock<dashmap::DashMap<Box<str>, RouteHistograms>> =
        std::sync::OnceLock::new();
    let by_route = BY_ROUTE.get_or_init(dashmap::DashMap::new);
    let (index, label) = method_label(method);
    let cached = by_route
        .get(route)
        .and_then(|methods| methods[index].clone());
    let histogram = cached.unwrap_or_else(|| {
        let histogram =
            metrics::histogram!(HTTP_SECONDS, "route" => route.to_owned(), "method" => label);
        by_route.entry(route.into()).or_default()[index] = Some(histogram.clone());
        histogram
    });
    histogram.record(elapsed.as_secs_f64());
}

/// One route's latency histograms, by [`method_label`]'s index.
type RouteHistograms = [Option<Histogram>; 8];

/// A method as a label (and its index in [`RouteHistograms`]) without allocating; methods
/// outside the standard set share one value (a client choosing the method must not choose
/// the number of series).
fn method_label(method: &axum::http::Method) -> (usize, &'static str) {
    use axum::http::Method;
    match *method {
        Method::GET => (0, "GET"),
        Method::POST => (1, "POST"),
        Method::PUT => (2, "PUT"),
        Method::DELETE => (3, "DELETE"),
        Method::PATCH => (4, "PATCH"),
        Method::HEAD => (5, "HEAD"),
        Method::OPTIONS => (6, "OPTIONS"),
        _ => (7, "other"),
    }
}

/// Counts one delivery attempt's outcome for an app.
pub fn delivery(app: &str, kind: &str, outcome: &'static str) {
    metrics::counter!(DELIVERIES, "app" => app.to_owned(), "kind" => kind.to_owned(), "outcome" => outcome)
        .increment(1);
}

/// One app's series, as handles: the hub keeps one per app it serves.
#[derive(Clone)]
pub struct AppMetrics {
    pub connections: Gauge,
    pub connections_total: Counter,
    pub subscriptions: Gauge,
    pub events_published: Counter,
    pub client_events: Counter,
    pub frames_sent: Counter,
    pub bytes_sent: Counter,
    pub publish_seconds: Histogram,
}

impl AppMetrics {
    /// The app's handles; registering them makes every per-app series exist at zero.
    pub fn new(app: &str) -> Self {
        let label = || [("app", app.to_owned())];
        for kind in DELIVERY_KINDS {
            for outcome in DELIVERY_OUTCOMES {
                metrics::counter!(DELIVERIES, "app" => app.to_owned(), "kind" => *kind, "outcome" => *outcome)
                    .increment(0);
            }
        }
        Self {
            connections: metrics::gauge!(CONNECTIONS, &label()),
            connections_total: metrics::counter!(CONNECTIONS_TOTAL, &label()),
            subscriptions: metrics::gauge!(SUBSCRIPTIONS, &label()),
            events_published: metrics::counter!(EVENTS_PUBLISHED, &label()),
            client_events: metrics::counter!(CLIENT_EVENTS, &label()),
            frames_sent: metrics::counter!(FRAMES_SENT, &label()),
            bytes_sent: metrics::counter!(BYTES_SENT, &label()),
            publish_seconds: metrics::histogram!(PUBLISH_SECONDS, &label()),
        }
    }
}
