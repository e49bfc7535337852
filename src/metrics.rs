//! Metric names, and the Prometheus recorder behind `GET /metrics`.
//!
//! Code records through the `metrics` crate's macros with the names below, so a name is
//! written once and a typo cannot split a series.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS: &str = "pushi_connections";
pub const CONNECTIONS_TOTAL: &str = "pushi_connections_total";
pub const EVENTS_PUBLISHED: &str = "pushi_events_published_total";
pub const FRAMES_SENT: &str = "pushi_frames_sent_total";
pub const SLOW_SOCKETS_CLOSED: &str = "pushi_slow_sockets_closed_total";
pub const CLIENT_ERRORS: &str = "pushi_client_errors_total";
pub const HTTP_REJECTED: &str = "pushi_http_rejected_total";
pub const CONNECTIONS_REFUSED: &str = "pushi_connections_refused_total";

/// Installs the global recorder once; later calls return a handle to the same one, so tests
/// that start several servers in one process work.
pub fn install() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case ours just renders
            // nothing; the server still works.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
