//! The extractor that authenticates a Pusher HTTP API request.
//!
//! A handler that takes [`Signed`] only runs for a request whose app exists and is enabled,
//! whose `auth_key` is that app's, whose timestamp is within the window, whose body matches
//! `body_md5`, and whose `auth_signature` signs it. A 401 names the string that should have
//! been signed, as Pusher does, so a client author can find their mistake.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};

use super::MAX_BODY_BYTES;
use crate::app::App;
use crate::auth;
use crate::clock::now_unix;
use crate::http::ServerContext;
use crate::http::error::ApiError;
use crate::hub::AppState;

/// How far `auth_timestamp` may be from the server's clock.
const TIMESTAMP_WINDOW_SECS: u64 = 600;

pub struct Signed {
    pub app: Arc<App>,
    pub state: Arc<AppState>,
    pub body: Bytes,
    /// The query parameters, decoded.
    pub params: Vec<(String, String)>,
}

impl Signed {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest<ServerContext> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &ServerContext) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let path_params = RawPathParams::from_request_parts(&mut parts, ctx)
            .await
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let params: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let app_id = path_params
            .iter()
            .find(|(k, _)| *k == "app_id")
            .map(|(_, v)| v.to_owned());
        let app = match app_id {
            Some(app_id) => ctx
                .hub
                .apps
                .by_id(&app_id)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no app with id {app_id:?}")))?,
            // The PyPI SDK's terminate_user_connections leaves `/apps/{id}` out of the path:
            // the key names the app.
            None => {
                let key = params
                    .iter()
                    .find(|(k, _)| k == "auth_key")
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| ApiError::unauthorized("missing auth_key"))?;
                ctx.hub
                    .apps
                    .by_key(key)
                    .await?
                    .ok_or_else(|| ApiError::unauthorized(format!("no app with key {key:?}")))?
            }
        };
        if !app.enabled {
            return Err(ApiError::forbidden(format!("app {} is disabled", app.id)));
        }
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                ApiError::too_large(format!(
                    "request body is larger than {MAX_BODY_BYTES} bytes"
                ))
            })?;
        verify(
            &app,
            parts.method.as_str(),
            parts.uri.path(),
            &params,
            &body,
        )?;
        let state = ctx.hub.state(&app);
        Ok(Self {
            app,
            state,
            body,
            params,
        })
    }
}

fn verify(
    app: &App,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
) -> Result<(), ApiError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let key = get("auth_key").ok_or_else(|| ApiError::unauthorized("missing auth_key"))?;
    if !auth::constant_time_eq(key, &app.key) {
        return Err(ApiError::unauthorized(format!(
            "auth_key {key:?} does not belong to app {}",
            app.id
        )));
    }
    let timestamp = get("auth_timestamp")
        .ok_or_else(|| ApiError::unauthorized("missing auth_timestamp"))?
        .parse::<i64>()
        .map_err(|_| ApiError::unauthorized("auth_timestamp is not a number"))?;
    // Any i64 can arrive: the distance is taken without overflow.
    let skew = now_unix().abs_diff(timestamp);
    if skew > TIMESTAMP_WINDOW_SECS {
        return Err(ApiError::unauthorized(format!(
            "auth_timestamp is {skew} s from the server's time; allowed {TIMESTAMP_WINDOW_SECS} s (check the client's clock)"
        )));
    }
    if let Some(version) = get("auth_version")
        && version != "1.0"
    {
        return Err(ApiError::unauthorized(format!(
            "auth_version {version:?} is not supported; use 1.0"
        )));
    }
    if !body.is_empty() {
        let expected = auth::body_md5(body);
        match get("body_md5") {
            Some(given) if given.eq_ignore_ascii_case(&expected) => {}
            Some(given) => {
                return Err(ApiError::unauthorized(format!(
                    "body_md5 {given:?} does not match the body (its MD5 is {expected})"
                )));
            }
            None => {
                return Err(ApiError::unauthorized(
                    "missing body_md5 for a request with a body",
                ));
            }
        }
    }
    let signature =
        get("auth_signature").ok_or_else(|| ApiError::unauthorized("missing auth_signature"))?;
    let to_sign = auth::request_string_to_sign(method, path, params);
    let expected = auth::sign(&app.secret, &to_sign);
    if !auth::constant_time_eq(signature, &expected) {
        return Err(ApiError::unauthorized(format!(
            "Invalid signature: you should have sent HmacSHA256Hex({to_sign:?}, your_secret)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{AppSettings, random_hex64};

    fn app() -> App {
        App {
            id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            name: "t".into(),
            ident: random_hex64(),
            enabled: true,
            settings: AppSettings::default(),
            description: None,
            created: 0,
            modified: 0,
        }
    }

    fn signed_params(
        app: &App,
        method: &str,
        path: &str,
        body: &[u8],
        ts: i64,
    ) -> Vec<(String, String)> {
        let mut params = vec![
            ("auth_key".to_owned(), app.key.clone()),
            ("auth_timestamp".to_owned(), ts.to_string()),
            ("auth_version".to_owned(), "1.0".to_owned()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".to_owned(), auth::body_md5(body)));
        }
        let sig = auth::sign(
            &app.secret,
            &auth::request_string_to_sign(method, path, &params),
        );
        params.push(("auth_signature".to_owned(), sig));
        params
    }

    #[test]
    fn accepts_a_correctly_signed_request() {
        let app = app();
        let body = br#"{"name":"e","channel":"c","data":"x"}"#;
        let params = signed_params(&app, "POST", "/apps/3/events", body, now_unix());
        assert!(verify(&app, "POST", "/apps/3/events", &params, body).is_ok());
    }

    #[test]
    fn refuses_tampering_stale_timestamps_and_wrong_keys() {
        let app = app();
        let body = br#"{"name":"e","channel":"c","data":"x"}"#;
        let params = signed_params(&app, "POST", "/apps/3/events", body, now_unix());
        let e = verify(&app, "POST", "/apps/3/events", &params, b"{}").unwrap_err();
        assert!(e.message.contains("body_md5"));
        let e = verify(&app, "GET", "/apps/3/events", &params, body).unwrap_err();
        assert!(e.message.contains("HmacSHA256Hex"));
        let old = signed_params(&app, "POST", "/apps/3/events", body, now_unix() - 3600);
        let e = verify(&app, "POST", "/apps/3/events", &old, body).unwrap_err();
        assert!(e.message.contains("auth_timestamp"));
        for extreme in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let params = signed_params(&app, "POST", "/apps/3/events", body, extreme);
            let e = verify(&app, "POST", "/apps/3/events", &params, body).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
            assert!(e.message.contains("auth_timestamp"), "{}", e.message);
        }
        let mut other = app.clone();
        other.key = "other".into();
        let e = verify(&other, "POST", "/apps/3/events", &params, body).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);
    }
}
