//! pushi: a self-hosted realtime push server speaking Pusher protocol 7 and Pushi's dialect.
//!
//! The modules follow the path of an event: [`ws`] and [`http`] take it in, [`hub`] validates
//! and fans it out (the one publish path), [`store`] keeps what must survive restarts. See
//! `docs/architecture.md` for the map.

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod credentials;
pub mod http;
pub mod hub;
pub mod listener;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod registry;
pub mod server;
pub mod store;
pub mod tls;
pub mod ws;

/// Selects rustls's crypto provider (ring) for every TLS client in the process: outgoing
/// webhooks, Web Push, APNs and e-mail. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
