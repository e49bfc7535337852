//! Wall-clock time as the server records it: Unix seconds (integer and fractional) and
//! milliseconds. One place, so every stored timestamp and every signature window reads the
//! same clock.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    since_epoch().as_secs() as i64
}

/// Seconds since the Unix epoch with a fraction (Pushi's event `timestamp`).
pub fn now_unix_f64() -> f64 {
    since_epoch().as_secs_f64()
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    since_epoch().as_millis() as i64
}
