//! Web Push: encrypted messages to browsers through their push service (RFC 8030), with the
//! payload encrypted for the subscription (RFC 8291, `aes128gcm` of RFC 8188) and the sender
//! identified by a VAPID token (RFC 8292).
//!
//! A browser subscription is an endpoint URL at its push service (FCM, Mozilla autopush,
//! Apple, ...) plus the browser's P-256 public key (`p256dh`) and a 16-byte `auth` secret.
//! One attempt:
//!
//! 1. reads the stored [`WebPushPayload`] and picks the VAPID private key (the payload's
//!    override, else the app's `vapid_key`; none is a permanent failure) and the contact
//!    (override, app `vapid_email`, else `mailto:noreply@pushi.io`; `mailto:` is added unless
//!    the contact already is a `mailto:` or `https:` URI);
//! 2. encrypts the plaintext for the subscription as one `aes128gcm` record (a fresh
//!    ephemeral key and salt every attempt, so every retry is a new ciphertext);
//! 3. signs a VAPID JWT (ES256) with `aud` = the endpoint's origin, `exp` = now + 12 h and
//!    `sub` = the contact;
//! 4. `POST`s the ciphertext with `Content-Encoding: aes128gcm`, `TTL`, `Urgency: normal` and
//!    `Authorization: vapid t=<JWT>, k=<public key>`, through the shared HTTP client.
//!
//! The push service's answer decides the outcome: 2xx delivered; 404 and 410 mean the
//! browser unsubscribed or the subscription expired, [`DeliveryError::Gone`], so the worker
//! removes the subscription; 429, 5xx and transport errors are retried; other 4xx and 3xx
//! are given up ([`classify_status`]). The endpoint is chosen by whoever subscribes, so it
//! must pass the [`outbound`](super::outbound) policy, and only the status line of the answer
//! is kept.
//!
//! VAPID keys are stored as PEM (PKCS#8 or SEC1) or as the raw 32-byte private scalar in
//! base64url (what Pushi stores); base64 DER is accepted too, as pywebpush does.
//! [`generate_vapid_key`] makes new ones and [`vapid_public_key`] gives the public key
//! browsers pass as `applicationServerKey` (`GET /vapid_key`).
//!
//! No cryptography is written here, only the wiring. Crates, and why:
//! * `web-push-native` for the RFC 8291 encryption ([`web_push_native::encrypt`], which
//!   derives the keys with `hkdf` and seals with `ece-native`/`aes-gcm`): pure Rust on the
//!   RustCrypto stack, so no OpenSSL to build or ship, and it only encrypts, leaving the HTTP
//!   request and the reading of the answer to us. Its default `vapid` feature is off: its
//!   token leaves the port out of `aud` and pulls in `jwt-simple`. Mozilla's `ece` would
//!   need OpenSSL (its only backend), and the `web-push` crate brings its own HTTP clients
//!   and also uses `ece`.
//! * `p256` (the same version `web-push-native` uses) for the keys: PEM/DER/raw parsing,
//!   generation, and the ES256 signature of the VAPID token (`p256::ecdsa`, deterministic
//!   RFC 6979 nonces). A JWT with a fixed header and three claims is only base64url and JSON
//!   around that signature, so no JWT library is needed for it.
//! * `base64` for the base64url of keys, tokens and subscriptions.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::rand_core::OsRng;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
use p256::{PublicKey, SecretKey};
use reqwest::StatusCode;

use super::outbound::OutboundClient;
use super::payload::{self, WebPushPayload};
use super::{Adapter, DeliveryError, NotifyConfig, classify_status, transport_error};
use crate::app::App;
use crate::credentials::decode_base64url;
use crate::store::DeliveryRecord;

/// The contact sent when neither the message nor the app names one (Pushi's default).
pub const DEFAULT_CONTACT: &str = "mailto:noreply@pushi.io";

/// The error when no VAPID private key is known for a message.
pub const NO_VAPID_KEY: &str = "VAPID private key not configured for this app";

/// How long a VAPID token is valid (RFC 8292 allows at most 24 hours).
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The `TTL` used when the configured one is 0: a TTL of 0 lets the push service drop the
/// message at once when the browser is not connected, which defeats offline delivery.
const DEFAULT_TTL: u64 = 86_400;

pub struct WebPushAdapter {
    client: OutboundClient,
    ttl: u64,
}

impl WebPushAdapter {
    pub fn new(config: &NotifyConfig) -> Self {
        Self {
            client: OutboundClient::new(config.outbound_policy(), config.request_timeout),
            ttl: if config.web_push_ttl == 0 {
                DEFAULT_TTL
            } else {
                config.web_push_ttl
            },
        }
    }
}

#[async_trait]
impl Adapter for WebPushAdapter {
    async fn deliver(&self, app: &App, delivery: &DeliveryRecord) -> Result<(), DeliveryError> {
        let push: WebPushPayload = payload::parse(&delivery.payload)?;
        let settings = &app.settings.delivery;
        let key_text = non_empty(push.vapid_key.as_deref())
            .or(non_empty(settings.vapid_key.as_deref()))
            .ok_or_else(|| DeliveryError::Permanent(NO_VAPID_KEY.into()))?;
        let key = crate::credentials::vapid_key(key_text).map_err(DeliveryError::Permanent)?;
        let contact = vapid_contact(
            non_empty(push.vapid_email.as_deref()).or(non_empty(settings.vapid_email.as_deref())),
        );

        let endpoint = reqwest::Url::parse(push.endpoint.trim())
            .map_err(|e| DeliveryError::Permanent(format!("invalid push endpoint: {e}")))?;
        let audience = endpoint_origin(&endpoint).map_err(DeliveryError::Permanent)?;
        let (ua_public, ua_auth) =
            subscription_keys(&push.p256dh, &push.auth).map_err(DeliveryError::Permanent)?;

        let body = web_push_native::encrypt(push.payload.into_bytes(), &ua_public, &ua_auth)
            .map_err(|e| DeliveryError::Permanent(format!("cannot encrypt the message: {e}")))?;
        let authorization = vapid_authorization(
            &key,
            &audience,
            &contact,
            crate::clock::now_unix() as u64 + TOKEN_LIFETIME.as_secs(),
        )
        .map_err(DeliveryError::Permanent)?;

        let response = self
            .client
            .request(reqwest::Method::POST, endpoint.as_str())?
            .header("content-encoding", "aes128gcm")
            .header("content-type", "application/octet-stream")
            .header("ttl", self.ttl)
            .header("urgency", "normal")
            .header("authorization", authorization)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(DeliveryError::Gone(format!(
                "push subscription is gone: HTTP {status}"
            )));
        }
        classify_status(status)
    }
}

/// A new VAPID private key (P-256), as PKCS#8 PEM.
pub fn generate_vapid_key() -> String {
    let key = SecretKey::random(&mut OsRng);
    match key.to_pkcs8_pem(LineEnding::LF) {
        Ok(pem) => pem.to_string(),
        // Encoding a fixed-size key cannot fail; should it ever, the raw form is accepted too.
        Err(_) => URL_SAFE_NO_PAD.encode(key.to_bytes()),
    }
}

/// The public key of a VAPID private key (any accepted form): base64url without padding of
/// the 65-byte uncompressed point, as browsers take it for `applicationServerKey`.
pub fn vapid_public_key(private_key: &str) -> Result<String, String> {
    let key = crate::credentials::vapid_key(private_key)?;
    Ok(URL_SAFE_NO_PAD.encode(key.public_key().to_encoded_point(false).as_bytes()))
}

/// Checks a browser subscription's keys as the REST layer receives them: `p256dh` must be a
/// P-256 public key and `auth` 16 bytes, both base64url.
pub fn validate_subscription(p256dh: &str, auth: &str) -> Result<(), String> {
    subscription_keys(p256dh, auth).map(|_| ())
}

/// The subscription's public key and auth secret, decoded.
fn subscription_keys(
    p256dh: &str,
    auth: &str,
) -> Result<(PublicKey, web_push_native::Auth), String> {
    let public = decode_base64url(p256dh)
        .ok()
        .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
        .ok_or("invalid p256dh key: expected a base64url P-256 public key")?;
    let secret = decode_base64url(auth)
        .ok()
        .filter(|bytes| bytes.len() == 16)
        .ok_or("invalid auth secret: expected 16 bytes in base64url")?;
    Ok((public, web_push_native::Auth::clone_from_slice(&secret)))
}

/// The JWT's audience: the endpoint's origin, `scheme://host[:port]` (default ports left out).
fn endpoint_origin(endpoint: &reqwest::Url) -> Result<String, String> {
    if !matches!(endpoint.scheme(), "https" | "http") || endpoint.host_str().is_none() {
        return Err(format!(
            "invalid push endpoint: {endpoint} is not an http(s) URL"
        ));
    }
    Ok(endpoint.origin().ascii_serialization())
}

/// The VAPID `sub`: a `mailto:` or `https:` URI; a bare address gets `mailto:`.
fn vapid_contact(contact: Option<&str>) -> String {
    match contact.map(str::trim).filter(|c| !c.is_empty()) {
        None => DEFAULT_CONTACT.to_owned(),
        Some(c) => {
            let lower = c.to_ascii_lowercase();
            if lower.starts_with("mailto:") || lower.starts_with("https:") {
                c.to_owned()
            } else {
                format!("mailto:{c}")
            }
        }
    }
}

/// The `Authorization` header value: `vapid t=<ES256 JWT>, k=<public key>` (RFC 8292 §3).
fn vapid_authorization(
    key: &SecretKey,
    audience: &str,
    contact: &str,
    expires: u64,
) -> Result<String, String> {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
    let claims = serde_json::json!({ "aud": audience, "exp": expires, "sub": contact });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{claims}");
    let signing_key = SigningKey::from(key);
    let signature: Signature = signing_key
        .try_sign(signing_input.as_bytes())
        .map_err(|e| format!("cannot sign the VAPID token: {e}"))?;
    // JWS ES256 signatures are the raw r || s (64 bytes), not DER.
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    let public = URL_SAFE_NO_PAD.encode(key.public_key().to_encoded_point(false).as_bytes());
    Ok(format!("vapid t={token}, k={public}"))
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_gets_mailto_unless_it_is_a_uri() {
        assert_eq!(vapid_contact(None), DEFAULT_CONTACT);
        assert_eq!(vapid_contact(Some("  ")), DEFAULT_CONTACT);
        assert_eq!(
            vapid_contact(Some("ops@example.com")),
            "mailto:ops@example.com"
        );
        assert_eq!(
            vapid_contact(Some("mailto:ops@example.com")),
            "mailto:ops@example.com"
        );
        assert_eq!(
            vapid_contact(Some("https://example.com/contact")),
            "https://example.com/contact"
        );
    }

    #[test]
    fn audience_is_the_origin() {
        let origin = |u: &str| endpoint_origin(&reqwest::Url::parse(u).unwrap());
        assert_eq!(
            origin("https://fcm.googleapis.com/fcm/send/abc?x=1").unwrap(),
            "https://fcm.googleapis.com"
        );
        assert_eq!(
            origin("https://push.example:8443/p/1").unwrap(),
            "https://push.example:8443"
        );
        assert_eq!(
            origin("https://push.example:443/p/1").unwrap(),
            "https://push.example"
        );
        assert_eq!(
            origin("http://127.0.0.1:9000/p").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(origin("ftp://push.example/p").is_err());
    }

    #[test]
    fn keys_in_every_stored_form_agree() {
        let key = SecretKey::random(&mut OsRng);
        let expected = URL_SAFE_NO_PAD.encode(key.public_key().to_encoded_point(false).as_bytes());
        let pkcs8_pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let sec1_pem = key.to_sec1_pem(LineEnding::LF).unwrap().to_string();
        let raw = URL_SAFE_NO_PAD.encode(key.to_bytes());
        let padded_std = base64::engine::general_purpose::STANDARD.encode(key.to_bytes());
        let der = URL_SAFE_NO_PAD.encode(key.to_pkcs8_der().unwrap().as_bytes());
        for form in [pkcs8_pem, sec1_pem, raw, padded_std, der] {
            assert_eq!(vapid_public_key(&form).unwrap(), expected, "{form}");
        }
        assert!(vapid_public_key("not a key").is_err());
        assert!(vapid_public_key(&URL_SAFE_NO_PAD.encode([0u8; 32])).is_err());
        assert!(
            vapid_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
    }
}
