//! Web Push delivery end to end, with real parts only: the test plays the browser (a P-256
//! key pair and an auth secret) and the push service (a local HTTP server that records what
//! it receives), calls the adapter, then decrypts the body as a browser would (RFC 8291,
//! with `web-push-native`'s decryption, itself checked against the RFC's worked example) and
//! verifies the VAPID token with an independent JWT library (`jsonwebtoken`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::rand_core::{OsRng, RngCore as _};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use parking_lot::Mutex;
use pushi::app::{App, AppSettings};
use pushi::notify::payload::{WebPushPayload, to_json};
use pushi::notify::web_push::{self, WebPushAdapter};
use pushi::notify::{Adapter, DeliveryError, NotifyConfig};
use pushi::store::{DeliveryKind, DeliveryRecord, DeliveryStatus};

/// RFC 8291 §5's application server key pair, as the RFC gives it (raw base64url) and as
/// OpenSSL writes it (SEC1 and PKCS#8 PEM, made with `openssl ec` / `openssl pkcs8 -topk8`).
const RFC_KEY_RAW: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
const RFC_KEY_PUBLIC: &str =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
const RFC_KEY_SEC1_PEM: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIMn1j4mBPp+Ohy5x9CqmThdXySVNzGK3LdwBC7QEPqEcoAoGCCqGSM49
AwEHoUQDQgAE/jP0qw3qcZFNtVgj9ztUlI9BMG2SBzLbuaWaUyhkgiAOWXp7e8Jg
uhwieZhYCZLpOXMALzASooro8Gu7eOXsDw==
-----END EC PRIVATE KEY-----
";
const RFC_KEY_PKCS8_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgyfWPiYE+n46HLnH0
KqZOF1fJJU3MYrct3AELtAQ+oRyhRANCAAT+M/SrDepxkU21WCP3O1SUj0EwbZIH
Mtu5pZpTKGSCIA5Zent7wmC6HCJ5mFgJkuk5cwAvMBKiiujwa7t45ewP
-----END PRIVATE KEY-----
";

// ---------------------------------------------------------------------------------------
// The browser

struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Self {
        let mut auth = [0u8; 16];
        OsRng.fill_bytes(&mut auth);
        Self {
            secret: p256::SecretKey::random(&mut OsRng),
            auth,
        }
    }

    fn p256dh(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    fn auth(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.auth)
    }

    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        let auth = web_push_native::Auth::clone_from_slice(&self.auth);
        web_push_native::decrypt(body.to_vec(), &self.secret, &auth)
            .expect("the body decrypts with the browser's key and auth secret")
    }

    fn subscription(&self, endpoint: &str, message: &str) -> WebPushPayload {
        WebPushPayload {
            endpoint: endpoint.into(),
            p256dh: self.p256dh(),
            auth: self.auth(),
            payload: message.into(),
            vapid_key: None,
            vapid_email: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The push service

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct PushService {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl PushService {
    /// Answers 201 Created (what FCM and autopush answer) until told otherwise; requests
    /// under `/slow/` are answered after two seconds.
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the push service");
        let addr = listener.local_addr().expect("local address");
        let service = Self {
            base: format!("http://{addr}"),
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(201)),
        };
        let app = Router::new().fallback(record).with_state(service.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        service
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    fn only_request(&self) -> Received {
        let received = self.received();
        assert_eq!(
            received.len(),
            1,
            "exactly one request reached the push service"
        );
        received.into_iter().next().expect("one request")
    }
}

async fn record(
    State(service): State<PushService>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    service.received.lock().push(Received {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    if uri.path().starts_with("/slow/") {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let status =
        StatusCode::from_u16(service.status.load(Ordering::SeqCst)).expect("a valid status code");
    (status, "push service says so")
}

// ---------------------------------------------------------------------------------------
// Fixtures

fn app(vapid_key: Option<&str>, vapid_email: Option<&str>) -> App {
    let mut settings = AppSettings::default();
    settings.delivery.vapid_key = vapid_key.map(str::to_owned);
    settings.delivery.vapid_email = vapid_email.map(str::to_owned);
    App {
        id: "1".into(),
        key: "key-1".into(),
        secret: "secret-1".into(),
        name: "app-1".into(),
        ident: "ident-1".into(),
        enabled: true,
        settings,
        description: None,
        created: 0,
        modified: 0,
    }
}

fn delivery(push: &WebPushPayload) -> DeliveryRecord {
    delivery_with_payload(&push.endpoint, to_json(push))
}

fn delivery_with_payload(target: &str, payload: String) -> DeliveryRecord {
    DeliveryRecord {
        id: 1,
        delivery_id: uuid::Uuid::new_v4().to_string(),
        app_id: "1".into(),
        kind: DeliveryKind::WebPush,
        target: target.into(),
        payload,
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: 0,
        last_error: None,
        created_ms: 0,
        updated_ms: 0,
    }
}

/// The push service runs on this machine: loopback is allowed (the policy refuses it by
/// default).
fn local_config() -> NotifyConfig {
    NotifyConfig {
        outbound_allow: vec!["127.0.0.0/8".parse().expect("a CIDR range")],
        ..NotifyConfig::default()
    }
}

fn adapter() -> WebPushAdapter {
    WebPushAdapter::new(&local_config())
}

fn header<'a>(request: &'a Received, name: &str) -> &'a str {
    request
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} is present"))
        .to_str()
        .expect("header is text")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Splits `vapid t=<jwt>, k=<key>` (RFC 8292 §3) into its parameters.
fn vapid_params(authorization: &str) -> HashMap<String, String> {
    let params = authorization
        .strip_prefix("vapid ")
        .expect("the vapid auth scheme");
    params
        .split(',')
        .map(|param| {
            let (name, value) = param.trim().split_once('=').expect("name=value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// Verifies the token's ES256 signature with `public_key` (base64url uncompressed point)
/// and its `aud` and `sub`; returns the claims.
fn verify_token(
    token: &str,
    public_key: &str,
    audience: &str,
    contact: &str,
) -> Result<serde_json::Value, jsonwebtoken::errors::Error> {
    let point = URL_SAFE_NO_PAD
        .decode(public_key)
        .expect("public key is base64url");
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    assert_eq!(point[0], 4, "uncompressed point prefix");
    let key = DecodingKey::from_ec_components(
        &URL_SAFE_NO_PAD.encode(&point[1..33]),
        &URL_SAFE_NO_PAD.encode(&point[33..65]),
    )?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.sub = Some(contact.to_owned());
    validation.leeway = 0;
    jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation).map(|data| data.claims)
}

// ---------------------------------------------------------------------------------------
// Delivery

#[tokio::test]
async fn delivers_an_encrypted_message_the_browser_can_read() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let vapid_key = web_push::generate_vapid_key();
    assert!(
        vapid_key.starts_with("-----BEGIN PRIVATE KEY-----"),
        "{vapid_key}"
    );
    let app = app(Some(&vapid_key), Some("ops@example.com"));
    let message = r#"{"title": "Hi", "body": "B"}"#;
    let push = browser.subscription(&service.endpoint("/wpush/v2/abc?x=1"), message);

    adapter()
        .deliver(&app, &delivery(&push))
        .await
        .expect("delivered");

    let request = service.only_request();
    assert_eq!(request.path, "/wpush/v2/abc");
    assert_eq!(browser.decrypt(&request.body), message.as_bytes());
    assert_eq!(header(&request, "content-encoding"), "aes128gcm");
    assert_eq!(header(&request, "content-type"), "application/octet-stream");
    assert_eq!(header(&request, "ttl"), "86400");
    assert_eq!(header(&request, "urgency"), "normal");

    let params = vapid_params(header(&request, "authorization"));
    let public_key = web_push::vapid_public_key(&vapid_key).expect("public key");
    assert_eq!(params["k"], public_key);
    let claims = verify_token(
        &params["t"],
        &public_key,
        &service.base,
        "mailto:ops@example.com",
    )
    .expect("the VAPID token verifies");
    assert_eq!(claims["aud"], service.base.as_str());
    assert_eq!(claims["sub"], "mailto:ops@example.com");
    let exp = claims["exp"].as_u64().expect("numeric exp");
    let twelve_hours = 12 * 60 * 60;
    let now = unix_now();
    assert!(
        exp >= now + twelve_hours - 60 && exp <= now + twelve_hours + 5,
        "exp {exp} is about now ({now}) + 12 h"
    );
    let header = jsonwebtoken::decode_header(&params["t"]).expect("JWT header");
    assert_eq!(header.alg, Algorithm::ES256);

    // The signature is really checked: another key's public key does not verify it.
    let other = web_push::vapid_public_key(&web_push::generate_vapid_key()).expect("other key");
    assert!(
        verify_token(
            &params["t"],
            &other,
            &service.base,
            "mailto:ops@example.com"
        )
        .is_err()
    );
}

#[tokio::test]
async fn each_attempt_is_a_fresh_ciphertext_and_large_messages_fit_one_record() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let app = app(Some(&web_push::generate_vapid_key()), None);
    let message = "x".repeat(3000);
    let record = delivery(&browser.subscription(&service.endpoint("/p/1"), &message));

    let adapter = adapter();
    adapter.deliver(&app, &record).await.expect("first attempt");
    adapter
        .deliver(&app, &record)
        .await
        .expect("second attempt");

    let received = service.received();
    assert_eq!(received.len(), 2);
    assert_ne!(
        received[0].body, received[1].body,
        "new salt and key each time"
    );
    for request in &received {
        assert_eq!(browser.decrypt(&request.body), message.as_bytes());
    }
}

#[tokio::test]
async fn ttl_comes_from_the_configuration() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let app = app(Some(&web_push::generate_vapid_key()), None);
    let record = delivery(&browser.subscription(&service.endpoint("/p/ttl"), "m"));

    let config = NotifyConfig {
        web_push_ttl: 600,
        ..local_config()
    };
    WebPushAdapter::new(&config)
        .deliver(&app, &record)
        .await
        .expect("delivered");
    // A TTL of 0 would let the push service drop messages for offline browsers.
    let config = NotifyConfig {
        web_push_ttl: 0,
        ..local_config()
    };
    WebPushAdapter::new(&config)
        .deliver(&app, &record)
        .await
        .expect("delivered");

    let received = service.received();
    assert_eq!(header(&received[0], "ttl"), "600");
    assert_eq!(header(&received[1], "ttl"), "86400");
}

// ---------------------------------------------------------------------------------------
// Keys and contacts

#[tokio::test]
async fn pem_and_raw_keys_all_sign_for_the_same_public_key() {
    let service = PushService::start().await;
    let browser = Browser::new();
    for key in [RFC_KEY_RAW, RFC_KEY_SEC1_PEM, RFC_KEY_PKCS8_PEM] {
        service.received.lock().clear();
        let app = app(Some(key), None);
        let push = browser.subscription(&service.endpoint("/p/keys"), "hello");
        adapter()
            .deliver(&app, &delivery(&push))
            .await
            .expect("delivered");

        let request = service.only_request();
        assert_eq!(browser.decrypt(&request.body), b"hello");
        let params = vapid_params(header(&request, "authorization"));
        assert_eq!(params["k"], RFC_KEY_PUBLIC, "key form {key}");
        verify_token(
            &params["t"],
            RFC_KEY_PUBLIC,
            &service.base,
            web_push::DEFAULT_CONTACT,
        )
        .expect("signed by the RFC key");
    }
}

#[test]
fn vapid_public_key_matches_known_answers() {
    for key in [RFC_KEY_RAW, RFC_KEY_SEC1_PEM, RFC_KEY_PKCS8_PEM] {
        assert_eq!(
            web_push::vapid_public_key(key).as_deref(),
            Ok(RFC_KEY_PUBLIC)
        );
    }
    // RFC 8291 §5's user agent key pair.
    assert_eq!(
        web_push::vapid_public_key("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94").as_deref(),
        Ok(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
        )
    );
    assert!(web_push::vapid_public_key("").is_err());
    assert!(
        web_push::vapid_public_key("-----BEGIN PRIVATE KEY-----\nxx\n-----END PRIVATE KEY-----")
            .is_err()
    );
}

#[test]
fn generated_keys_are_new_pkcs8_p256_keys() {
    let a = web_push::generate_vapid_key();
    let b = web_push::generate_vapid_key();
    assert_ne!(a, b);
    for key in [&a, &b] {
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public = web_push::vapid_public_key(key).expect("readable");
        assert_eq!(URL_SAFE_NO_PAD.decode(public).expect("base64url").len(), 65);
    }
}

#[test]
fn the_decryption_used_here_follows_rfc_8291() {
    // RFC 8291 §5: the user agent's private key and auth secret decrypt the example message.
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let ua_private =
        p256::SecretKey::from_slice(&decode("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"))
            .expect("RFC key");
    let auth = web_push_native::Auth::clone_from_slice(&decode("BTBZMqHH6r4Tts7J_aSIgg"));
    let ciphertext = decode(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLoc\
         InmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLV\
         WGNWQexSgSxsj_Qulcy4a-fN",
    );
    let plaintext = web_push_native::decrypt(ciphertext, &ua_private, &auth).expect("decrypts");
    assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
}

#[tokio::test]
async fn overrides_in_the_message_win_over_the_app() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let app_key = web_push::generate_vapid_key();
    let app = app(Some(&app_key), Some("app@example.com"));
    let mut push = browser.subscription(&service.endpoint("/p/override"), "m");
    push.vapid_key = Some(RFC_KEY_RAW.into());
    push.vapid_email = Some("mailto:direct@example.com".into());

    adapter()
        .deliver(&app, &delivery(&push))
        .await
        .expect("delivered");

    let request = service.only_request();
    let params = vapid_params(header(&request, "authorization"));
    assert_eq!(params["k"], RFC_KEY_PUBLIC);
    verify_token(
        &params["t"],
        RFC_KEY_PUBLIC,
        &service.base,
        "mailto:direct@example.com",
    )
    .expect("signed with the override key, for the override contact");
}

#[tokio::test]
async fn contacts_default_and_get_mailto() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let key = web_push::generate_vapid_key();
    let public = web_push::vapid_public_key(&key).expect("public key");
    let cases = [
        (None, web_push::DEFAULT_CONTACT),
        (Some(""), web_push::DEFAULT_CONTACT),
        (Some("ops@example.com"), "mailto:ops@example.com"),
        (Some("mailto:ops@example.com"), "mailto:ops@example.com"),
        (
            Some("https://example.com/contact"),
            "https://example.com/contact",
        ),
    ];
    assert_eq!(web_push::DEFAULT_CONTACT, "mailto:noreply@pushi.io");
    for (email, expected) in cases {
        service.received.lock().clear();
        let push = browser.subscription(&service.endpoint("/p/contact"), "m");
        adapter()
            .deliver(&app(Some(&key), email), &delivery(&push))
            .await
            .expect("delivered");
        let params = vapid_params(header(&service.only_request(), "authorization"));
        let claims =
            verify_token(&params["t"], &public, &service.base, expected).expect("verifies");
        assert_eq!(claims["sub"], expected, "contact {email:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Outcomes

#[tokio::test]
async fn push_service_answers_decide_the_outcome() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let app = app(Some(&web_push::generate_vapid_key()), None);
    let record = delivery(&browser.subscription(&service.endpoint("/p/status"), "m"));
    let adapter = adapter();

    for ok in [200, 201, 202] {
        service.answer(ok);
        assert_eq!(adapter.deliver(&app, &record).await, Ok(()), "HTTP {ok}");
    }
    for gone in [404, 410] {
        service.answer(gone);
        let outcome = adapter.deliver(&app, &record).await;
        assert!(
            matches!(&outcome, Err(DeliveryError::Gone(why)) if why.contains(&gone.to_string())),
            "HTTP {gone}: {outcome:?}"
        );
    }
    for retry in [429, 500, 502, 503] {
        service.answer(retry);
        let outcome = adapter.deliver(&app, &record).await;
        assert!(
            matches!(outcome, Err(DeliveryError::Retry(_))),
            "HTTP {retry}: {outcome:?}"
        );
    }
    for permanent in [400, 401, 403, 413] {
        service.answer(permanent);
        let outcome = adapter.deliver(&app, &record).await;
        assert!(
            matches!(outcome, Err(DeliveryError::Permanent(_))),
            "HTTP {permanent}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retried() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let app = app(Some(&web_push::generate_vapid_key()), None);
    let config = NotifyConfig {
        request_timeout: Duration::from_millis(300),
        ..local_config()
    };
    let adapter = WebPushAdapter::new(&config);

    let slow = delivery(&browser.subscription(&service.endpoint("/slow/1"), "m"));
    let outcome = adapter.deliver(&app, &slow).await;
    assert!(
        matches!(outcome, Err(DeliveryError::Retry(_))),
        "{outcome:?}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let refused = delivery(&browser.subscription(&format!("http://127.0.0.1:{port}/p"), "m"));
    let outcome = adapter.deliver(&app, &refused).await;
    assert!(
        matches!(outcome, Err(DeliveryError::Retry(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn what_can_never_be_sent_is_permanent_and_sends_nothing() {
    let service = PushService::start().await;
    let browser = Browser::new();
    let key = web_push::generate_vapid_key();
    let endpoint = service.endpoint("/p/never");
    let adapter = adapter();
    let push = browser.subscription(&endpoint, "m");

    // No VAPID key anywhere.
    let outcome = adapter.deliver(&app(None, None), &delivery(&push)).await;
    assert_eq!(
        outcome,
        Err(DeliveryError::Permanent(
            "VAPID private key not configured for this app".into()
        ))
    );
    assert_eq!(
        web_push::NO_VAPID_KEY,
        "VAPID private key not configured for this app"
    );
    let outcome = adapter
        .deliver(&app(Some("  "), None), &delivery(&push))
        .await;
    assert!(
        matches!(outcome, Err(DeliveryError::Permanent(_))),
        "{outcome:?}"
    );

    // An unreadable key, a bad subscription, a bad endpoint, a bad stored payload.
    let mut bad_p256dh = push.clone();
    bad_p256dh.p256dh = URL_SAFE_NO_PAD.encode([4u8; 65]);
    let mut bad_auth = push.clone();
    bad_auth.auth = URL_SAFE_NO_PAD.encode([1u8; 8]);
    let mut bad_endpoint = push.clone();
    bad_endpoint.endpoint = "not a url".into();
    let mut not_http = push.clone();
    not_http.endpoint = "mailto:someone@example.com".into();
    let cases = [
        (app(Some("not a key"), None), delivery(&push)),
        (app(Some(&key), None), delivery(&bad_p256dh)),
        (app(Some(&key), None), delivery(&bad_auth)),
        (app(Some(&key), None), delivery(&bad_endpoint)),
        (app(Some(&key), None), delivery(&not_http)),
        (
            app(Some(&key), None),
            delivery_with_payload(&endpoint, "{not json".into()),
        ),
    ];
    for (app, record) in cases {
        let outcome = adapter.deliver(&app, &record).await;
        assert!(
            matches!(outcome, Err(DeliveryError::Permanent(_))),
            "{}: {outcome:?}",
            record.payload
        );
    }
    assert!(service.received().is_empty(), "nothing was sent");
}

#[test]
fn subscriptions_can_be_checked_before_they_are_stored() {
    let browser = Browser::new();
    assert_eq!(
        web_push::validate_subscription(&browser.p256dh(), &browser.auth()),
        Ok(())
    );
    assert!(web_push::validate_subscription("AAAA", &browser.auth()).is_err());
    assert!(web_push::validate_subscription(&browser.p256dh(), "AAAA").is_err());
}
