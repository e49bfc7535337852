//! Apple push notifications through APNs' HTTP/2 provider API.
//!
//! Pushi spoke Apple's legacy binary protocol (port 2195), which Apple shut down in 2021 (spec
//! §8.1). This adapter speaks the current one: one HTTP/2 `POST {base}/3/device/{token}` per
//! notification, over a TLS connection kept open and shared by the notifications of the same
//! credentials.
//!
//! # One attempt
//!
//! 1. Credentials (app settings): **token auth** when `apn_auth_key` (the `.p8` key, PEM),
//!    `apn_key_id` and `apn_team_id` are set, else **certificate auth** when `apn_cer` and
//!    `apn_key` (PEM certificate and its key) are, else a permanent "No APN credentials
//!    configured for this app" (Pushi raised for every event of such apps, spec §11 item 27;
//!    here the failure stays with the one delivery). `apn_topic` (the bundle id) is required.
//! 2. Base URL: the app's `apn_url`, else [`NotifyConfig::apns_url`] (`PUSHI_APNS_URL`), else
//!    Apple's sandbox (`https://api.sandbox.push.apple.com`) when the payload's `sandbox`
//!    (direct messaging) or else the app's `apn_sandbox` says so, else production
//!    (`https://api.push.apple.com`). The app's `apn_url` is the tenant's choice and must
//!    pass the [`outbound`](super::outbound) policy; the others are the operator's or
//!    Apple's and are used as they are.
//! 3. Headers: `apns-topic`, `apns-push-type: alert`, `apns-priority: 10`, `apns-expiration`
//!    (now + one day: Apple keeps the notification that long for an offline device), and
//!    `apns-id` = the delivery id (a UUID), so APNs and the app see the same id on every
//!    retry; with token auth also `authorization: bearer <JWT>`.
//! 4. Body: a message that is an object with `aps` is sent as it is; a string becomes
//!    `{"aps": {"alert": <string>, "sound": "default", "badge": 0}}` (Pushi's payload); any
//!    other value becomes the alert as JSON text.
//!
//! # Answers
//!
//! 200 is delivered. 410 (`Unregistered`), and 400 `BadDeviceToken` or
//! `DeviceTokenNotForTopic`, are [`DeliveryError::Gone`]: the worker drops the token's
//! subscriptions (a token that is not hexadecimal is treated the same without asking).
//! 429, 5xx and transport errors are retried. 403 `ExpiredProviderToken` drops the cached
//! JWT and is retried (the next attempt signs a new one); 403 `InvalidProviderToken` and
//! every other 4xx are permanent, with Apple's `reason`. Only a reason Apple documents is
//! repeated ([`REASONS`]); any other body is left out, since with an `apn_url` the answer may
//! come from a server that is not Apple's. Redirects are not followed.
//!
//! # Tokens and connections
//!
//! The provider token is an ES256 JWT with header `kid` = key id and claims `iss` = team id,
//! `iat` = now. Apple refuses tokens older than an hour and throttles providers that sign
//! new ones more often than every 20 minutes, so one token per app is cached and replaced
//! after 50 minutes (or when the app's key changes, or after `ExpiredProviderToken`).
//!
//! One `reqwest` client per credential set (one per team and key id for token auth, one per
//! certificate for certificate auth, which needs the certificate as the TLS client identity)
//! is built on first use and kept, so its HTTP/2 connection is reused. HTTP/2 comes from
//! ALPN (`h2`) in the rustls handshake, which is what APNs expects; prior knowledge would be
//! wrong for TLS. Server certificates are checked against the system's roots; tests add
//! their CA with [`ApnsAdapter::with_extra_root`], never by turning verification off.
//!
//! No cryptography is written here: `p256` (RustCrypto) parses the `.p8` key and makes the
//! ES256 signature (RFC 6979 deterministic nonces); a JWT with a fixed header and two claims
//! is only base64url and JSON around it, as the Web Push adapter's VAPID token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::Signature;
use p256::ecdsa::signature::Signer as _;
use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::outbound::{self, Chooser, OutboundPolicy};
use super::payload::{self, ApnPayload};
use super::{Adapter, DeliveryError, NotifyConfig, transport_error};
use crate::app::{App, DeliverySettings};
use crate::store::DeliveryRecord;

/// Apple's production endpoint.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// Apple's development (sandbox) endpoint.
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// The error for apps with neither token nor certificate credentials.
pub const NO_CREDENTIALS: &str = "No APN credentials configured for this app";
/// The error for apps without `apn_topic`.
pub const NO_TOPIC: &str = "No APN topic (bundle id) configured for this app";

/// How long a provider token is used before a new one is signed: Apple refuses tokens older
/// than an hour and throttles refreshes more frequent than every 20 minutes.
pub const TOKEN_REFRESH: Duration = Duration::from_secs(50 * 60);

/// How long APNs keeps a notification for a device that is offline (`apns-expiration`).
const EXPIRATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Clients kept; past this many distinct credential sets the cache starts over.
const MAX_CACHED_CLIENTS: usize = 256;

/// How an app authenticates to APNs.
enum Auth<'a> {
    Token {
        key_pem: &'a str,
        key_id: &'a str,
        team_id: &'a str,
    },
    Certificate {
        cert_pem: &'a str,
        key_pem: &'a str,
    },
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl<'a> Auth<'a> {
    /// Token auth if its three settings are there, else certificate auth, else none.
    fn of(settings: &'a DeliverySettings) -> Option<Self> {
        if let (Some(key_pem), Some(key_id), Some(team_id)) = (
            non_empty(&settings.apn_auth_key),
            non_empty(&settings.apn_key_id),
            non_empty(&settings.apn_team_id),
        ) {
            return Some(Self::Token {
                key_pem,
                key_id,
                team_id,
            });
        }
        if let (Some(cert_pem), Some(key_pem)) =
            (non_empty(&settings.apn_cer), non_empty(&settings.apn_key))
        {
            return Some(Self::Certificate { cert_pem, key_pem });
        }
        None
    }

    /// Which client serves these credentials.
    fn client_key(&self) -> ClientKey {
        match self {
            Self::Token {
                key_id, team_id, ..
            } => ClientKey::Token(format!("{team_id}/{key_id}")),
            Self::Certificate { cert_pem, key_pem } => {
                ClientKey::Certificate(fingerprint(&[cert_pem, key_pem]))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ClientKey {
    Token(String),
    Certificate(Vec<u8>),
}

fn fingerprint(parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// A signed provider token and what it was signed with.
struct CachedToken {
    credentials: Vec<u8>,
    jwt: String,
    signed: Instant,
}

/// The `reason`s APNs documents; any other is not repeated in a delivery's error.
pub const REASONS: &[&str] = &[
    "BadCollapseId",
    "BadDeviceToken",
    "BadExpirationDate",
    "BadMessageId",
    "BadPriority",
    "BadTopic",
    "DeviceTokenNotForTopic",
    "DuplicateHeaders",
    "IdleTimeout",
    "InvalidPushType",
    "MissingDeviceToken",
    "MissingTopic",
    "PayloadEmpty",
    "TopicDisallowed",
    "BadCertificate",
    "BadCertificateEnvironment",
    "ExpiredProviderToken",
    "Forbidden",
    "InvalidProviderToken",
    "MissingProviderToken",
    "UnrelatedKeyIdInToken",
    "BadPath",
    "MethodNotAllowed",
    "ExpiredToken",
    "Unregistered",
    "PayloadTooLarge",
    "TooManyProviderTokenUpdates",
    "TooManyRequests",
    "InternalServerError",
    "ServiceUnavailable",
    "Shutdown",
];

/// Sends [`ApnPayload`] deliveries.
pub struct ApnsAdapter {
    timeout: Duration,
    base_url: Option<String>,
    /// The policy for an app's own `apn_url`.
    policy: Arc<OutboundPolicy>,
    extra_roots: Vec<reqwest::Certificate>,
    clients: Mutex<HashMap<(ClientKey, Chooser), reqwest::Client>>,
    /// Provider tokens by app id.
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl ApnsAdapter {
    pub fn new(config: &NotifyConfig) -> Self {
        crate::install_crypto_provider();
        Self {
            timeout: config.request_timeout,
            base_url: config
                .apns_url
                .as_deref()
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned),
            policy: config.outbound_policy(),
            extra_roots: Vec::new(),
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// An adapter that also trusts the CA certificate(s) in `ca_pem`, besides the system's
    /// roots: for tests against a local APNs stand-in.
    pub fn with_extra_root(config: &NotifyConfig, ca_pem: &str) -> Result<Self, String> {
        let roots = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|e| format!("invalid CA certificate: {e}"))?;
        if roots.is_empty() {
            return Err("no certificate in the CA PEM".into());
        }
        let mut adapter = Self::new(config);
        adapter.extra_roots = roots;
        Ok(adapter)
    }

    /// The client for these credentials and this base URL's chooser, built on first use.
    fn client(&self, auth: &Auth<'_>, chooser: Chooser) -> Result<reqwest::Client, DeliveryError> {
        let key = (auth.client_key(), chooser);
        if let Some(client) = self.clients.lock().get(&key) {
            return Ok(client.clone());
        }
        let policy = match chooser {
            Chooser::Tenant => self.policy.clone(),
            Chooser::Operator => Arc::new(OutboundPolicy::any()),
        };
        let mut builder = outbound::client_builder(policy, self.timeout)
            .pool_idle_timeout(Duration::from_secs(10 * 60));
        if !self.extra_roots.is_empty() {
            builder = builder.tls_certs_merge(self.extra_roots.iter().cloned());
        }
        if let Auth::Certificate { cert_pem, key_pem } = auth {
            let pem = format!("{cert_pem}\n{key_pem}\n");
            let identity = reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| {
                DeliveryError::Permanent(format!("invalid APN certificate or key: {e}"))
            })?;
            builder = builder.identity(identity);
        }
        // With a client certificate, a failure here is most likely that certificate (a key
        // that does not match it); without, it is this machine (no CA roots): retried.
        let client = builder.build().map_err(|e| {
            let message = format!("cannot set up the APNs client: {e}");
            match auth {
                Auth::Certificate { .. } => DeliveryError::Permanent(message),
                Auth::Token { .. } => DeliveryError::Retry(message),
            }
        })?;
        let mut clients = self.clients.lock();
        if clients.len() >= MAX_CACHED_CLIENTS {
            clients.clear();
        }
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// The app's provider token: the cached one while it is young enough and signed with the
    /// app's current key, else a new one.
    fn provider_token(
        &self,
        app_id: &str,
        key_pem: &str,
        key_id: &str,
        team_id: &str,
    ) -> Result<String, DeliveryError> {
        let credentials = fingerprint(&[key_pem, key_id, team_id]);
        let mut tokens = self.tokens.lock();
        if let Some(cached) = tokens.get(app_id)
            && cached.credentials == credentials
            && cached.signed.elapsed() < TOKEN_REFRESH
        {
            return Ok(cached.jwt.clone());
        }
        let jwt = provider_jwt(key_pem, key_id, team_id, crate::clock::now_unix() as u64)
            .map_err(DeliveryError::Permanent)?;
        tokens.insert(
            app_id.to_owned(),
            CachedToken {
                credentials,
                jwt: jwt.clone(),
                signed: Instant::now(),
            },
        );
        Ok(jwt)
    }

    /// Drops the app's cached token if it is still `jwt` (one APNs called expired).
    fn forget_token(&self, app_id: &str, jwt: &str) {
        let mut tokens = self.tokens.lock();
        if tokens.get(app_id).is_some_and(|cached| cached.jwt == jwt) {
            tokens.remove(app_id);
        }
    }

    /// The base URL for an app's delivery, and who chose it.
    fn base_url<'a>(&'a self, app: &'a App, sandbox: Option<bool>) -> (&'a str, Chooser) {
        let d = &app.settings.delivery;
        if let Some(url) = non_empty(&d.apn_url) {
            return (url.trim_end_matches('/'), Chooser::Tenant);
        }
        let url = self
            .base_url
            .as_deref()
            .unwrap_or(if sandbox.unwrap_or(d.apn_sandbox) {
                SANDBOX_URL
            } else {
                PRODUCTION_URL
            });
        (url.trim_end_matches('/'), Chooser::Operator)
    }
}

/// Reads an APNs `.p8` key (see [`crate::credentials::apn_auth_key`]).
pub use crate::credentials::apn_auth_key as parse_auth_key;

/// Signs an APNs provider token: ES256, header `kid`, claims `iss` and `iat`.
pub fn provider_jwt(
    key_pem: &str,
    key_id: &str,
    team_id: &str,
    iat: u64,
) -> Result<String, String> {
    let key = parse_auth_key(key_pem)?;
    let header = json!({ "alg": "ES256", "kid": key_id });
    let claims = json!({ "iss": team_id, "iat": iat });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: Signature = key.sign(signing_input.as_bytes());
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

/// The JSON body APNs receives for a message.
pub fn notification_body(message: &Value) -> Value {
    let alert = |text: String| json!({ "aps": { "alert": text, "sound": "default", "badge": 0 } });
    match message {
        Value::Object(map) if map.contains_key("aps") => message.clone(),
        Value::String(text) => alert(text.clone()),
        Value::Null => alert(String::new()),
        other => alert(other.to_string()),
    }
}

/// Device tokens are hexadecimal (64 digits today; Apple says not to rely on the length).
fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 512 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Apple's answers are a few dozen bytes of JSON; more is not read.
const MAX_ANSWER_BYTES: usize = 4096;

/// The start of an answer's body, at most [`MAX_ANSWER_BYTES`]: a server that is not Apple's
/// cannot make the adapter read without end.
async fn answer_head(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ANSWER_BYTES);
    String::from_utf8_lossy(&body).into_owned()
}

/// What an answer from APNs means. `reason` is Apple's `reason` from the JSON body.
pub fn classify(status: StatusCode, body: &str) -> Result<(), DeliveryError> {
    if status.is_success() {
        return Ok(());
    }
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
        .and_then(|reason| REASONS.iter().find(|known| **known == reason).copied());
    let detail = match reason {
        Some(reason) => format!("APNs HTTP {}: {reason}", status.as_u16()),
        None => format!("APNs HTTP {}", status.as_u16()),
    };
    match (status.as_u16(), reason.unwrap_or_default()) {
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
            Err(DeliveryError::Gone(detail))
        }
        (403, "ExpiredProviderToken") => Err(DeliveryError::Retry(detail)),
        (429, _) | (500..=599, _) => Err(DeliveryError::Retry(detail)),
        _ => Err(DeliveryError::Permanent(detail)),
    }
}

#[async_trait]
impl Adapter for ApnsAdapter {
    async fn deliver(&self, app: &App, delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        let apn: ApnPayload = payload::parse(&delivery.payload)?;
        let settings = &app.settings.delivery;
        let auth =
            Auth::of(settings).ok_or_else(|| DeliveryError::Permanent(NO_CREDENTIALS.into()))?;
        let topic = non_empty(&settings.apn_topic)
            .ok_or_else(|| DeliveryError::Permanent(NO_TOPIC.into()))?;
        let token = apn.token.trim();
        if !valid_token(token) {
            return Err(DeliveryError::Gone(format!(
                "BadDeviceToken: {:?} is not a hexadecimal device token",
                crate::logs::clip(token)
            )));
        }

        let (base, chooser) = self.base_url(app, apn.sandbox);
        let url = reqwest::Url::parse(&format!("{base}/3/device/{token}"))
            .map_err(|e| DeliveryError::Permanent(format!("invalid APNs URL: {e}")))?;
        if chooser == Chooser::Tenant {
            self.policy
                .check_url(&url)
                .map_err(|refused| DeliveryError::Permanent(refused.to_string()))?;
        }
        let client = self.client(&auth, chooser)?;
        let expiration = crate::clock::now_unix() as u64 + EXPIRATION.as_secs();
        let mut request = client
            .post(url)
            .header("apns-topic", topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", expiration.to_string())
            .json(&notification_body(&apn.message));
        if let Ok(id) = uuid::Uuid::parse_str(delivery.delivery_id.trim()) {
            request = request.header("apns-id", id.hyphenated().to_string());
        }
        let mut jwt = None;
        if let Auth::Token {
            key_pem,
            key_id,
            team_id,
        } = auth
        {
            let token = self.provider_token(&app.id, key_pem, key_id, team_id)?;
            request = request.header("authorization", format!("bearer {token}"));
            jwt = Some(token);
        }

        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let body = answer_head(response).await;
        let outcome = classify(status, &body);
        if status == StatusCode::FORBIDDEN
            && let (Err(DeliveryError::Retry(_)), Some(jwt)) = (&outcome, &jwt)
        {
            // ExpiredProviderToken: sign a new one next time.
            self.forget_token(&app.id, jwt);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_become_alerts_and_aps_objects_pass() {
        assert_eq!(
            notification_body(&json!("Hello")),
            json!({"aps": {"alert": "Hello", "sound": "default", "badge": 0}})
        );
        let custom = json!({"aps": {"alert": {"title": "T", "body": "B"}}, "extra": 1});
        assert_eq!(notification_body(&custom), custom);
        assert_eq!(
            notification_body(&json!({"title": "T"})),
            json!({"aps": {"alert": "{\"title\":\"T\"}", "sound": "default", "badge": 0}})
        );
        assert_eq!(notification_body(&Value::Null)["aps"]["alert"], "");
        assert_eq!(notification_body(&json!(42))["aps"]["alert"], "42");
    }

    #[test]
    fn answers_are_classified() {
        let gone = |s: u16, body: &str| {
            matches!(
                classify(StatusCode::from_u16(s).unwrap(), body),
                Err(DeliveryError::Gone(_))
            )
        };
        let retry = |s: u16, body: &str| {
            matches!(
                classify(StatusCode::from_u16(s).unwrap(), body),
                Err(DeliveryError::Retry(_))
            )
        };
        let permanent = |s: u16, body: &str| match classify(StatusCode::from_u16(s).unwrap(), body)
        {
            Err(DeliveryError::Permanent(m)) => Some(m),
            _ => None,
        };
        assert_eq!(classify(StatusCode::OK, ""), Ok(()));
        assert!(gone(410, r#"{"reason":"Unregistered","timestamp":1}"#));
        assert!(gone(400, r#"{"reason":"BadDeviceToken"}"#));
        assert!(gone(400, r#"{"reason":"DeviceTokenNotForTopic"}"#));
        assert!(retry(429, r#"{"reason":"TooManyRequests"}"#));
        assert!(retry(500, r#"{"reason":"InternalServerError"}"#));
        assert!(retry(503, r#"{"reason":"ServiceUnavailable"}"#));
        assert!(retry(403, r#"{"reason":"ExpiredProviderToken"}"#));
        assert!(permanent(403, r#"{"reason":"InvalidProviderToken"}"#).is_some());
        let m = permanent(400, r#"{"reason":"BadTopic"}"#).unwrap();
        assert!(m.contains("BadTopic") && m.contains("400"), "{m}");
        assert!(permanent(413, r#"{"reason":"PayloadTooLarge"}"#).is_some());
        // Only the reasons Apple documents are repeated: another server's body is not.
        assert_eq!(permanent(400, "not json").unwrap(), "APNs HTTP 400");
        assert_eq!(
            permanent(400, r#"{"reason":"db password is hunter2"}"#).unwrap(),
            "APNs HTTP 400"
        );
    }

    #[test]
    fn tokens_must_be_hex() {
        assert!(valid_token(&"ab12".repeat(16)));
        assert!(valid_token(&"AB12".repeat(16)));
        assert!(!valid_token(""));
        assert!(!valid_token("../../3/device/x"));
        assert!(!valid_token("abc def"));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(parse_auth_key("not a key").is_err());
        assert!(provider_jwt("nope", "KEY", "TEAM", 0).is_err());
    }
}
