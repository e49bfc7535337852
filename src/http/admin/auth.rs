//! [`Operator`]: who is calling the admin API, and which apps they may reach.
//!
//! Two kinds of credentials, both in the `Authorization` header so they never end up in a URL
//! or a log line: `Bearer <admin token>` (the server's `PUSHI_ADMIN_TOKEN`) reaches every app;
//! `Basic base64(key:secret)` with one app's key and secret reaches that app alone. Both are
//! compared in constant time. Every handler asks [`Operator::app`] for the app it acts on, so
//! an app's credentials can never name another app.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;

use crate::app::App;
use crate::auth::constant_time_eq;
use crate::http::ServerContext;
use crate::http::error::{ApiError, ApiResult};

/// The caller of an admin API route.
pub enum Operator {
    /// The server's admin token: every app, and creating apps.
    Admin,
    /// One app's key and secret: that app only.
    App(Arc<App>),
}

const HOW_TO_SIGN_IN: &str = "sign in with \"Authorization: Bearer <admin token>\" \
     (PUSHI_ADMIN_TOKEN) or \"Authorization: Basic base64(key:secret)\" with an app's key and secret";

impl Operator {
    /// The app `id`, if these credentials reach it: 404 for an admin asking for an app that
    /// does not exist, 403 for an app's credentials naming another app.
    pub async fn app(&self, ctx: &ServerContext, id: &str) -> ApiResult<Arc<App>> {
        match self {
            Self::App(own) if own.id != id => Err(ApiError::forbidden(format!(
                "these credentials are app {}'s: they reach no other app",
                own.id
            ))),
            _ => ctx
                .hub
                .apps
                .by_id(id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no app with id {id:?}"))),
        }
    }

    /// Refuses anyone but the admin: `what` says what they tried.
    pub fn require_admin(&self, what: &str) -> ApiResult<()> {
        match self {
            Self::Admin => Ok(()),
            Self::App(_) => Err(ApiError::forbidden(format!(
                "{what} needs the admin token; an app's credentials reach only that app"
            ))),
        }
    }
}

impl FromRequestParts<ServerContext> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &ServerContext,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized(format!("not signed in: {HOW_TO_SIGN_IN}")))?
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let (scheme, credentials) = value.trim().split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(expected) = &ctx.admin.token else {
                return Err(ApiError::unauthorized(
                    "this server has no admin token (set PUSHI_ADMIN_TOKEN); sign in with an app's key and secret",
                ));
            };
            if constant_time_eq(credentials, expected) {
                return Ok(Self::Admin);
            }
            return Err(ApiError::unauthorized("wrong admin token"));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let (key, secret) = basic_credentials(credentials)?;
            let wrong = || ApiError::unauthorized("no app with that key and secret");
            let app = ctx.hub.apps.by_key(&key).await?.ok_or_else(wrong)?;
            if !constant_time_eq(&secret, &app.secret) {
                return Err(wrong());
            }
            if !app.enabled {
                return Err(ApiError::forbidden(format!(
                    "app {} is disabled; only the admin can enable it",
                    app.id
                )));
            }
            return Ok(Self::App(app));
        }
        Err(ApiError::unauthorized(format!(
            "unsupported Authorization scheme {scheme:?}: {HOW_TO_SIGN_IN}"
        )))
    }
}

/// `key:secret` from a Basic credential.
fn basic_credentials(encoded: &str) -> ApiResult<(String, String)> {
    let bad = || ApiError::unauthorized("Basic credentials must be base64(key:secret)");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (key, secret) = text.split_once(':').ok_or_else(bad)?;
    Ok((key.to_owned(), secret.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_basic_credentials() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("key-1:sec:ret");
        assert_eq!(
            basic_credentials(&encoded).unwrap(),
            ("key-1".to_owned(), "sec:ret".to_owned())
        );
        assert!(basic_credentials("%%%").is_err());
        let no_colon = base64::engine::general_purpose::STANDARD.encode("nocolon");
        assert!(basic_credentials(&no_colon).is_err());
    }
}
