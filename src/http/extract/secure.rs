//! Whether the client reached us over TLS: terminated here, or at a trusted proxy that says so
//! with `X-Forwarded-Proto: https`. Cookies set on such requests are marked `Secure`.
//!
//! The header is believed only from `trusted_proxies`, like `X-Forwarded-For`: anyone else
//! could write it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::http::ServerContext;
use crate::listener::TlsTerminated;

pub struct Secure(pub bool);

impl FromRequestParts<ServerContext> for Secure {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ServerContext,
    ) -> Result<Self, Self::Rejection> {
        if parts
            .extensions
            .get::<TlsTerminated>()
            .is_some_and(|tls| tls.0)
        {
            return Ok(Secure(true));
        }
        let from_trusted_proxy = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .is_some_and(|peer| ctx.admission.is_trusted_proxy(peer.0.ip()));
        let forwarded_https = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            // The first hop's scheme is the client's.
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        Ok(Secure(from_trusted_proxy && forwarded_https))
    }
}
