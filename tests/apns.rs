//! Apple push end to end, with real parts only: a local HTTP/2 server over TLS stands in for
//! APNs (hyper, tokio-rustls with ALPN `h2`, a certificate from a CA the test makes with
//! `rcgen`), records what it receives and answers what the test tells it to. The adapter
//! trusts the test CA through [`ApnsAdapter::with_extra_root`] only.
//!
//! Provider tokens are verified with an independent JWT library (`jsonwebtoken`) and the
//! public half of a P-256 key the test generates and hands to the app as its `.p8` key;
//! certificate auth is checked by a server that requires a client certificate signed by the
//! test CA and reports the one it got.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::service::service_fn;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use pushi::app::{App, AppSettings};
use pushi::notify::apns::{self, ApnsAdapter};
use pushi::notify::payload::{ApnPayload, to_json};
use pushi::notify::{Adapter, DeliveryError, NotifyConfig};
use pushi::store::{DeliveryKind, DeliveryRecord, DeliveryStatus};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio_rustls::TlsAcceptor;

const TOPIC: &str = "com.example.pushi";
const KEY_ID: &str = "ABC123DEFG";
const TEAM_ID: &str = "DEF123GHIJ";

fn device_token() -> String {
    hex_of(uuid::Uuid::new_v4().as_bytes()) + &hex_of(uuid::Uuid::new_v4().as_bytes())
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// A CA, the server's certificate and client certificates

struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl TestPki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Pushi APNs test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        Self { ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for 127.0.0.1: (certificate DER, PKCS#8 key DER).
    fn server_cert(&self) -> (CertificateDer<'static>, Vec<u8>) {
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "api.push.apple.test");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("server certificate");
        (cert.der().clone(), key.serialize_der())
    }

    /// A client certificate as Apple issues them for certificate auth: (cert PEM, key PEM,
    /// cert DER).
    fn client_cert(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Apple Push Services: {TOPIC}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("client certificate");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

// ---------------------------------------------------------------------------------------
// Apple

#[derive(Debug, Clone)]
struct Received {
    connection: usize,
    method: String,
    path: String,
    version: Version,
    alpn: Option<Vec<u8>>,
    headers: HeaderMap,
    body: Bytes,
    client_cert: Option<Vec<u8>>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn bearer(&self) -> &str {
        self.header("authorization")
            .and_then(|a| a.strip_prefix("bearer "))
            .expect("authorization: bearer <JWT>")
    }
}

#[derive(Clone)]
struct Apple {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    /// Answers to give, in order (status, reason); 200 when none is left.
    script: Arc<Mutex<VecDeque<(u16, &'static str)>>>,
    connections: Arc<AtomicUsize>,
}

impl Apple {
    /// Starts the stand-in; with `require_client_cert` the TLS handshake fails without a
    /// client certificate signed by the test CA.
    async fn start(pki: &TestPki, require_client_cert: bool) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pki.ca.der().clone()).expect("CA as a root");
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        );
        let verifier = if require_client_cert {
            verifier.build()
        } else {
            verifier.allow_unauthenticated().build()
        }
        .expect("client verifier");
        let (cert, key) = pki.server_cert();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            )
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("address");
        let apple = Self {
            base: format!("https://127.0.0.1:{}", addr.port()),
            received: Arc::default(),
            script: Arc::default(),
            connections: Arc::default(),
        };
        let server = apple.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let server = server.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let connection = server.connections.fetch_add(1, Ordering::SeqCst);
                    let (_, session) = tls.get_ref();
                    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                    let client_cert = session
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .map(|c| c.to_vec());
                    let service = service_fn(move |request: Request<Incoming>| {
                        let server = server.clone();
                        let alpn = alpn.clone();
                        let client_cert = client_cert.clone();
                        async move {
                            Ok::<_, hyper::Error>(
                                server.answer(request, connection, alpn, client_cert).await,
                            )
                        }
                    });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        apple
    }

    async fn answer(
        &self,
        request: Request<Incoming>,
        connection: usize,
        alpn: Option<Vec<u8>>,
        client_cert: Option<Vec<u8>>,
    ) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let apns_id = parts
            .headers
            .get("apns-id")
            .cloned()
            .unwrap_or_else(|| hyper::header::HeaderValue::from_static("generated"));
        self.received.lock().push(Received {
            connection,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            version: parts.version,
            alpn,
            headers: parts.headers,
            body,
            client_cert,
        });
        let (status, reason) = self.script.lock().pop_front().unwrap_or((200, ""));
        let body = if status == 200 {
            Bytes::new()
        } else {
            Bytes::from(json!({ "reason": reason }).to_string())
        };
        Response::builder()
            .status(status)
            .header("apns-id", apns_id)
            .body(Full::new(body))
            .expect("a response")
    }

    fn then_answer(&self, status: u16, reason: &'static str) {
        self.script.lock().push_back((status, reason));
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    fn only_request(&self) -> Received {
        let mut all = self.received();
        assert_eq!(all.len(), 1, "one request: {all:#?}");
        all.remove(0)
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// An app with token auth: returns it and the key pair whose private half is its `.p8`.
fn token_app(apn_url: Option<&str>) -> (App, KeyPair) {
    let key = KeyPair::generate().expect("a P-256 key");
    let mut settings = AppSettings::default();
    let d = &mut settings.delivery;
    d.apn_auth_key = Some(key.serialize_pem());
    d.apn_key_id = Some(KEY_ID.into());
    d.apn_team_id = Some(TEAM_ID.into());
    d.apn_topic = Some(TOPIC.into());
    d.apn_url = apn_url.map(str::to_owned);
    (app_with(settings), key)
}

fn certificate_app(apn_url: &str, cert_pem: &str, key_pem: &str) -> App {
    let mut settings = AppSettings::default();
    let d = &mut settings.delivery;
    d.apn_cer = Some(cert_pem.into());
    d.apn_key = Some(key_pem.into());
    d.apn_topic = Some(TOPIC.into());
    d.apn_url = Some(apn_url.into());
    app_with(settings)
}

fn app_with(settings: AppSettings) -> App {
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

fn delivery(token: &str, message: Value) -> DeliveryRecord {
    let payload = ApnPayload {
        token: token.into(),
        message,
        sandbox: None,
    };
    DeliveryRecord {
        id: 1,
        delivery_id: uuid::Uuid::new_v4().to_string(),
        app_id: "1".into(),
        kind: DeliveryKind::Apn,
        target: token.into(),
        payload: to_json(&payload),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_ms: 0,
        last_error: None,
        created_ms: 0,
        updated_ms: 0,
    }
}

/// The APNs stand-ins run on this machine: loopback is allowed for an app's `apn_url` (the
/// policy refuses it by default).
fn config() -> NotifyConfig {
    NotifyConfig {
        request_timeout: Duration::from_secs(5),
        outbound_allow: vec!["127.0.0.0/8".parse().expect("a CIDR range")],
        ..NotifyConfig::default()
    }
}

fn adapter(pki: &TestPki) -> ApnsAdapter {
    ApnsAdapter::with_extra_root(&config(), &pki.ca_pem()).expect("a valid CA")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Verifies a provider token with the app key's public half; returns (header, claims).
fn verify_jwt(jwt: &str, key: &KeyPair) -> (jsonwebtoken::Header, Value) {
    let point = key.public_key_raw();
    assert_eq!(point.len(), 65, "uncompressed P-256 point");
    let decoding =
        DecodingKey::from_ec_components(&base64_url(&point[1..33]), &base64_url(&point[33..65]))
            .expect("public key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.set_required_spec_claims::<&str>(&[]);
    let data = jsonwebtoken::decode::<Value>(jwt, &decoding, &validation)
        .expect("the JWT verifies with the app's public key");
    (data.header, data.claims)
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn expect_err(result: Result<(), DeliveryError>) -> DeliveryError {
    result.expect_err("the attempt fails")
}

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn token_auth_sends_what_apple_expects() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, key) = token_app(Some(&apple.base));
    let token = device_token();
    let record = delivery(&token, json!("Hello from Pushi"));

    adapter(&pki)
        .deliver(&app, &record)
        .await
        .expect("delivered");

    let r = apple.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/3/device/{token}"));
    assert_eq!(r.version, Version::HTTP_2);
    assert_eq!(r.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(r.header("apns-topic"), Some(TOPIC));
    assert_eq!(r.header("apns-push-type"), Some("alert"));
    assert_eq!(r.header("apns-priority"), Some("10"));
    assert_eq!(r.header("apns-id"), Some(record.delivery_id.as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let expiration: u64 = r
        .header("apns-expiration")
        .and_then(|e| e.parse().ok())
        .expect("a numeric apns-expiration");
    assert!(
        expiration > now() && expiration <= now() + 7 * 86_400,
        "{expiration}"
    );
    assert_eq!(
        r.json(),
        json!({"aps": {"alert": "Hello from Pushi", "sound": "default", "badge": 0}})
    );
    assert_eq!(
        r.client_cert, None,
        "token auth presents no client certificate"
    );

    let (header, claims) = verify_jwt(r.bearer(), &key);
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    assert_eq!(claims["iss"], TEAM_ID);
    let iat = claims["iat"].as_u64().expect("numeric iat");
    assert!(iat.abs_diff(now()) <= 60, "iat {iat} is now");
}

#[tokio::test]
async fn objects_with_aps_are_sent_as_they_are() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, _) = token_app(Some(&apple.base));
    let message = json!({
        "aps": {"alert": {"title": "Build", "body": "green"}, "badge": 3, "mutable-content": 1},
        "build": 42
    });
    adapter(&pki)
        .deliver(&app, &delivery(&device_token(), message.clone()))
        .await
        .expect("delivered");
    assert_eq!(apple.only_request().json(), message);
}

#[tokio::test]
async fn the_token_and_the_connection_are_reused() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, _) = token_app(Some(&apple.base));
    let adapter = adapter(&pki);
    adapter
        .deliver(&app, &delivery(&device_token(), json!("one")))
        .await
        .expect("first");
    // A new token now would have a later `iat`, so a different signature.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    adapter
        .deliver(&app, &delivery(&device_token(), json!("two")))
        .await
        .expect("second");

    let received = apple.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[0].bearer(), received[1].bearer(), "the cached JWT");
    assert_eq!(
        received[0].connection, received[1].connection,
        "one HTTP/2 connection"
    );
}

#[tokio::test]
async fn an_expired_provider_token_is_retried_with_a_new_one() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, key) = token_app(Some(&apple.base));
    let adapter = adapter(&pki);
    let record = delivery(&device_token(), json!("hi"));

    apple.then_answer(403, "ExpiredProviderToken");
    assert!(matches!(
        expect_err(adapter.deliver(&app, &record).await),
        DeliveryError::Retry(m) if m.contains("ExpiredProviderToken")
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    adapter.deliver(&app, &record).await.expect("the retry");

    let received = apple.received();
    assert_eq!(received.len(), 2);
    assert_ne!(received[0].bearer(), received[1].bearer(), "a fresh JWT");
    let (_, first) = verify_jwt(received[0].bearer(), &key);
    let (_, second) = verify_jwt(received[1].bearer(), &key);
    assert!(second["iat"].as_u64() > first["iat"].as_u64());
    assert_eq!(received[0].header("apns-id"), received[1].header("apns-id"));
}

#[tokio::test]
async fn answers_map_to_outcomes() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, _) = token_app(Some(&apple.base));
    let adapter = adapter(&pki);
    let token = device_token();

    type Expected = fn(&DeliveryError) -> bool;
    let cases: [(u16, &str, Expected); 7] = [
        (410, "Unregistered", |e| matches!(e, DeliveryError::Gone(_))),
        (400, "BadDeviceToken", |e| {
            matches!(e, DeliveryError::Gone(_))
        }),
        (400, "DeviceTokenNotForTopic", |e| {
            matches!(e, DeliveryError::Gone(_))
        }),
        (500, "InternalServerError", |e| {
            matches!(e, DeliveryError::Retry(_))
        }),
        (429, "TooManyRequests", |e| {
            matches!(e, DeliveryError::Retry(_))
        }),
        (403, "InvalidProviderToken", |e| {
            matches!(e, DeliveryError::Permanent(_))
        }),
        (
            400,
            "BadTopic",
            |e| matches!(e, DeliveryError::Permanent(m) if m.contains("BadTopic")),
        ),
    ];
    for (status, reason, expected) in cases {
        apple.then_answer(status, reason);
        let error = expect_err(adapter.deliver(&app, &delivery(&token, json!("x"))).await);
        assert!(expected(&error), "{status} {reason} gave {error:?}");
    }
    assert_eq!(apple.received().len(), cases.len());
}

#[tokio::test]
async fn certificate_auth_presents_the_client_certificate() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, true).await;
    let (cert_pem, key_pem, cert_der) = pki.client_cert();
    let app = certificate_app(&apple.base, &cert_pem, &key_pem);
    let adapter = adapter(&pki);
    let token = device_token();

    adapter
        .deliver(&app, &delivery(&token, json!("by certificate")))
        .await
        .expect("delivered with the client certificate");
    let r = apple.only_request();
    assert_eq!(r.client_cert.as_deref(), Some(cert_der.as_slice()));
    assert_eq!(r.path, format!("/3/device/{token}"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("apns-topic"), Some(TOPIC));
    assert_eq!(r.version, Version::HTTP_2);

    // The server insists: without a certificate the handshake fails (a transport error).
    let (token_app, _) = token_app(Some(&apple.base));
    assert!(matches!(
        expect_err(
            adapter
                .deliver(&token_app, &delivery(&token, json!("x")))
                .await
        ),
        DeliveryError::Retry(_)
    ));
    assert_eq!(apple.received().len(), 1);

    // A certificate that does not parse is a permanent failure.
    let broken = certificate_app(&apple.base, "not a certificate", &key_pem);
    assert!(matches!(
        expect_err(
            adapter
                .deliver(&broken, &delivery(&token, json!("x")))
                .await
        ),
        DeliveryError::Permanent(_)
    ));
}

#[tokio::test]
async fn missing_credentials_or_topic_are_permanent() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let adapter = adapter(&pki);
    let record = delivery(&device_token(), json!("x"));

    let mut settings = AppSettings::default();
    settings.delivery.apn_topic = Some(TOPIC.into());
    settings.delivery.apn_url = Some(apple.base.clone());
    assert_eq!(
        adapter.deliver(&app_with(settings.clone()), &record).await,
        Err(DeliveryError::Permanent(apns::NO_CREDENTIALS.into()))
    );
    // Half of token auth is no credentials either.
    settings.delivery.apn_key_id = Some(KEY_ID.into());
    settings.delivery.apn_team_id = Some(TEAM_ID.into());
    assert_eq!(
        adapter.deliver(&app_with(settings), &record).await,
        Err(DeliveryError::Permanent(apns::NO_CREDENTIALS.into()))
    );

    let (mut app, _) = token_app(Some(&apple.base));
    app.settings.delivery.apn_topic = None;
    assert_eq!(
        adapter.deliver(&app, &record).await,
        Err(DeliveryError::Permanent(apns::NO_TOPIC.into()))
    );

    let (mut app, _) = token_app(Some(&apple.base));
    app.settings.delivery.apn_auth_key = Some("not a key".into());
    assert!(matches!(
        expect_err(adapter.deliver(&app, &record).await),
        DeliveryError::Permanent(m) if m.contains("auth key")
    ));
    assert!(apple.received().is_empty());
}

#[tokio::test]
async fn a_token_that_is_not_hex_is_gone_without_asking() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, _) = token_app(Some(&apple.base));
    assert!(matches!(
        expect_err(
            adapter(&pki)
                .deliver(&app, &delivery("../../x", json!("x")))
                .await
        ),
        DeliveryError::Gone(_)
    ));
    assert!(apple.received().is_empty());
}

#[tokio::test]
async fn the_app_url_wins_over_the_global_one() {
    let pki = TestPki::new();
    let app_apple = Apple::start(&pki, false).await;
    let global_apple = Apple::start(&pki, false).await;
    let config = NotifyConfig {
        apns_url: Some(global_apple.base.clone()),
        ..config()
    };
    let adapter = ApnsAdapter::with_extra_root(&config, &pki.ca_pem()).expect("a valid CA");

    let (app, _) = token_app(None);
    adapter
        .deliver(&app, &delivery(&device_token(), json!("global")))
        .await
        .expect("through PUSHI_APNS_URL");
    let (app, _) = token_app(Some(&app_apple.base));
    adapter
        .deliver(&app, &delivery(&device_token(), json!("own")))
        .await
        .expect("through the app's apn_url");

    assert_eq!(global_apple.only_request().json()["aps"]["alert"], "global");
    assert_eq!(app_apple.only_request().json()["aps"]["alert"], "own");
}

#[tokio::test]
async fn an_untrusted_server_is_refused() {
    let pki = TestPki::new();
    let apple = Apple::start(&pki, false).await;
    let (app, _) = token_app(Some(&apple.base));
    // The system's roots only: the test CA is unknown, the handshake fails (a machine
    // without any system roots fails to set up TLS: retried too).
    let result = ApnsAdapter::new(&config())
        .deliver(&app, &delivery(&device_token(), json!("x")))
        .await;
    assert!(matches!(result, Err(DeliveryError::Retry(_))), "{result:?}");
    assert!(apple.received().is_empty());
}

#[test]
fn with_extra_root_refuses_what_is_not_a_certificate() {
    assert!(ApnsAdapter::with_extra_root(&config(), "not a PEM").is_err());
}
