//! Outbound requests a tenant aims: webhooks, direct messages, Web Push endpoints, app
//! webhooks, an app's `apn_url` and SMTP hosts, pointed at the server's own network. Each
//! attack runs against real local receivers that count what reaches them: with the default
//! policy they must see nothing, and the allow-list is the only way to let them through.
//! Also: the per-request target cap, receivers' bodies never coming back, listing counts and
//! signed-request timestamps at the extremes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use pushi::config::Config;
use serde_json::{Value, json};

use crate::common::{self, TestServer};

/// What a refusal says, wherever it is reported.
const ONLY_PUBLIC: &str = "deliveries only go to public addresses";

/// A local HTTP receiver that counts requests and answers each with one scripted reply.
#[derive(Clone)]
struct Receiver {
    hits: Arc<AtomicUsize>,
    addr: SocketAddr,
}

impl Receiver {
    /// Answers 200 with an empty body.
    async fn start(bind: &str) -> Self {
        Self::answering(bind, 200, &[], "").await
    }

    async fn answering(bind: &str, status: u16, headers: &[(&str, &str)], body: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let hits = Arc::new(AtomicUsize::new(0));
        let status = StatusCode::from_u16(status).expect("status");
        let headers: Vec<(HeaderName, HeaderValue)> = headers
            .iter()
            .map(|(k, v)| (k.parse().expect("name"), v.parse().expect("value")))
            .collect();
        let body = body.to_owned();
        let counter = hits.clone();
        let app = axum::Router::new().fallback(any(move || {
            let (headers, body) = (headers.clone(), body.clone());
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut response = (status, body).into_response();
                response.headers_mut().extend(headers);
                response
            }
        }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { hits, addr }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.addr.port())
    }
}

/// A TCP listener that counts connections and says nothing (an SMTP server that never
/// greets): any connection at all is a request that got through.
async fn silent_listener() -> (Arc<AtomicUsize>, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (accepted, port)
}

/// A browser's Web Push subscription keys (P-256 public key, auth secret), base64url.
fn browser_keys() -> (String, String) {
    let key = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let public = key.public_key().to_encoded_point(false);
    (
        URL_SAFE_NO_PAD.encode(public.as_bytes()),
        URL_SAFE_NO_PAD.encode([7u8; 16]),
    )
}

/// Quick attempts, and a VAPID key so Web Push deliveries get as far as their request.
fn delivering(c: &mut Config) {
    c.notify.base_backoff = Duration::from_millis(50);
    c.notify.max_backoff = Duration::from_millis(100);
    c.notify.request_timeout = Duration::from_secs(2);
    c.notify.max_attempts = 2;
    c.static_apps[0].settings.delivery.vapid_key =
        Some(pushi::notify::web_push::generate_vapid_key());
}

/// The app's deliveries once none is pending (or after about five seconds).
async fn settled_deliveries(server: &TestServer, token: &str) -> Value {
    let mut list = Value::Null;
    for _ in 0..100 {
        let (status, reply) = server
            .rest(
                "GET",
                "/deliveries",
                &[("count", "1000")],
                None,
                Some(token),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        list = reply;
        let listed_pending = list["deliveries"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["status"] == "pending"));
        if list["counts"]["pending"] == 0 && !listed_pending {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    list
}

/// Every recorded delivery to `target`, failed, with an error mentioning `reason`.
fn assert_failed(list: &Value, target: &str, reason: &str) {
    let records: Vec<&Value> = list["deliveries"]
        .as_array()
        .expect("deliveries")
        .iter()
        .filter(|d| d["target"] == target)
        .collect();
    assert!(!records.is_empty(), "no delivery to {target}: {list}");
    for record in records {
        assert_eq!(record["status"], "failed", "{record}");
        let error = record["last_error"].as_str().unwrap_or_default();
        assert!(
            error.contains(reason),
            "{target}: {error:?} lacks {reason:?}"
        );
    }
}

/// Aims every tenant-facing URL surface at `url` and expects each to be refused at once
/// (the URL's host is a literal address the policy refuses).
async fn assert_url_refused_everywhere(server: &TestServer, token: &str, url: &str, kind: &str) {
    let (p256dh, auth) = browser_keys();
    let requests = [
        ("/webs", json!({"url": url, "event": "news"})),
        (
            "/web_pushes",
            json!({"endpoint": url, "p256dh": p256dh, "auth": auth, "event": "news"}),
        ),
        (
            "/messaging/webhook",
            json!({"urls": [url], "data": {"x": 1}}),
        ),
        (
            "/messaging/web_push",
            json!({"endpoint": url, "p256dh": p256dh, "auth": auth, "message": "m"}),
        ),
        (
            "/messaging",
            json!({"adapters": ["webhook"], "webhook_urls": [url], "data": {"x": 1}}),
        ),
    ];
    for (path, body) in requests {
        let (status, reply) = server
            .rest("POST", path, &[], Some(&body), Some(token))
            .await;
        let message = if path == "/messaging" {
            assert_eq!(status, 200, "{path}: {reply}");
            reply["webhook"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        } else {
            assert_eq!(status, 400, "{path} {url}: {reply}");
            reply["message"].as_str().unwrap_or_default().to_owned()
        };
        assert!(
            message.contains(kind) && message.contains(ONLY_PUBLIC),
            "{path} {url}: {message}"
        );
    }
    let (_, list) = server
        .rest("GET", "/deliveries", &[], None, Some(token))
        .await;
    assert_eq!(list["deliveries"], json!([]), "nothing recorded: {list}");
}

#[tokio::test]
async fn loopback_targets_are_refused_and_the_receiver_sees_nothing() {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = TestServer::start_with(delivering).await;
    let token = server.pushi_login().await;
    for host in [
        "127.0.0.1",
        "127.1.2.3",
        // The same address spelled as one number, and as IPv4-mapped IPv6.
        "2130706433",
        "[::ffff:127.0.0.1]",
    ] {
        let url = receiver.url(host, "/hook");
        assert_url_refused_everywhere(&server, &token, &url, "loopback address").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits(), 0);
}

#[tokio::test]
async fn private_address_targets_are_refused() {
    let server = TestServer::start_with(delivering).await;
    let token = server.pushi_login().await;
    for url in [
        "http://10.0.0.1/hook",
        "http://172.16.5.4:8080/",
        "http://192.168.1.1/admin",
        "http://100.64.0.1/",
        "http://0.0.0.0:6379/",
        "http://[fd00::1]/",
    ] {
        let kind = if url.contains("[fd00") {
            "unique local address"
        } else if url.contains("100.64") {
            "shared (CGNAT) address"
        } else if url.contains("0.0.0.0") {
            "unspecified address"
        } else {
            "private address"
        };
        assert_url_refused_everywhere(&server, &token, url, kind).await;
    }
}

#[tokio::test]
async fn the_cloud_metadata_address_is_refused() {
    let server = TestServer::start_with(delivering).await;
    let token = server.pushi_login().await;
    for url in [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
    ] {
        assert_url_refused_everywhere(&server, &token, url, "link-local address").await;
    }
}

#[tokio::test]
async fn ipv6_loopback_is_refused_and_the_receiver_sees_nothing() {
    let receiver = Receiver::start("[::1]:0").await;
    let server = TestServer::start_with(delivering).await;
    let token = server.pushi_login().await;
    for host in ["[::1]", "[0:0:0:0:0:0:0:1]"] {
        let url = receiver.url(host, "/hook");
        assert_url_refused_everywhere(&server, &token, &url, "loopback address").await;
    }
    assert_url_refused_everywhere(&server, &token, "http://[::]:80/", "unspecified address").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.hits(), 0);
}

#[tokio::test]
async fn a_name_resolving_to_loopback_is_refused_after_dns_and_never_reached() {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = TestServer::start_with(delivering).await;
    let token = server.pushi_login().await;
    let url = receiver.url("localhost", "/hook");
    let endpoint = receiver.url("localhost", "/push");
    let (p256dh, auth) = browser_keys();

    // A name says nothing until it resolves: subscriptions are taken...
    for (path, body) in [
        ("/webs", json!({"url": url, "event": "news"})),
        (
            "/web_pushes",
            json!({"endpoint": endpoint, "p256dh": p256dh, "auth": auth, "event": "news"}),
        ),
    ] {
        let (status, reply) = server
            .rest("POST", path, &[], Some(&body), Some(&token))
            .await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    // ...and every delivery to them fails when the name resolves to loopback only.
    let (status, _) = server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "hi", "channel": "news"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"urls": [url], "data": {"x": 1}})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
    assert_eq!(reply["results"][0]["status"], "failed", "{reply}");
    let error = reply["results"][0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("localhost has no public address") && error.contains(ONLY_PUBLIC),
        "{error}"
    );
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/web_push",
            &[],
            Some(&json!({"endpoint": endpoint, "p256dh": p256dh, "auth": auth, "message": "m"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["status"], "failed", "{reply}");

    let list = settled_deliveries(&server, &token).await;
    assert_failed(&list, &url, "localhost has no public address");
    assert_failed(&list, &endpoint, "localhost has no public address");
    assert_eq!(list["counts"]["failed"], 4, "{list}");
    assert_eq!(receiver.hits(), 0);
}

#[tokio::test]
async fn a_redirect_to_loopback_is_not_followed() {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let target = receiver.url("127.0.0.1", "/hook");
    // The redirecting receiver stands for a public one: only its own address is allowed.
    let redirector = Receiver::answering("127.0.0.2:0", 302, &[("location", &target)], "").await;
    let temporary = Receiver::answering("127.0.0.2:0", 307, &[("location", &target)], "").await;
    let server = TestServer::start_with(|c| {
        delivering(c);
        c.notify.outbound_allow = vec!["127.0.0.2/32".parse().expect("a CIDR range")];
    })
    .await;
    let token = server.pushi_login().await;
    let hooks = [
        redirector.url("127.0.0.2", "/moved"),
        temporary.url("127.0.0.2", "/moved"),
    ];
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"urls": hooks, "data": {"x": 1}})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let errors: Vec<&str> = reply["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["error"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        errors,
        [
            "HTTP 302 Found (redirects are not followed)",
            "HTTP 307 Temporary Redirect (redirects are not followed)"
        ],
        "{reply}"
    );

    // Web Push endpoints and the publish path are no different.
    let (p256dh, auth) = browser_keys();
    let (status, reply) = server
        .rest(
            "POST",
            "/web_pushes",
            &[],
            Some(&json!({"endpoint": hooks[0], "p256dh": p256dh, "auth": auth, "event": "news"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "hi", "channel": "news"})),
            Some(&token),
        )
        .await;
    let list = settled_deliveries(&server, &token).await;
    assert_failed(&list, &hooks[0], "redirects are not followed");
    assert!(redirector.hits() >= 2 && temporary.hits() >= 1);
    assert_eq!(receiver.hits(), 0, "the redirect's target was never asked");
}

#[tokio::test]
async fn app_webhooks_apn_url_and_smtp_hosts_are_held_to_the_policy() {
    let hook = Receiver::start("127.0.0.1:0").await;
    let apple = Receiver::start("127.0.0.1:0").await;
    let (smtp_connections, smtp_port) = silent_listener().await;
    let hook_url = hook.url("127.0.0.1", "/pusher");
    let apn_url = apple.url("127.0.0.1", "");
    let smtp_url = format!("smtp://127.0.0.1:{smtp_port}?sender=app@pushi.test");
    let server = TestServer::start_with(|c| {
        delivering(c);
        let settings = &mut c.static_apps[0].settings;
        settings.webhooks = vec![pushi::app::WebhookConfig {
            url: hook_url.clone(),
            event_types: Vec::new(),
        }];
        settings.delivery.apn_url = Some(apn_url.clone());
        settings.delivery.apn_auth_key = Some(pushi::notify::web_push::generate_vapid_key());
        settings.delivery.apn_key_id = Some("KEYID12345".into());
        settings.delivery.apn_team_id = Some("TEAMID1234".into());
        settings.delivery.apn_topic = Some("com.example.app".into());
        settings.delivery.smtp_url = Some(smtp_url.clone());
    })
    .await;
    let token = server.pushi_login().await;

    // Pusher-style app webhook: a channel becoming occupied.
    let mut client = server.connect().await;
    client.subscribe("news").await;

    // APNs through the app's `apn_url`.
    let device = "ab".repeat(32);
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/apn",
            &[],
            Some(&json!({"tokens": [device], "message": "hi"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let error = reply["results"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("loopback address"), "{reply}");

    // E-mail through the app's `smtp_url`, and through hosts a message names.
    for body in [
        json!({"to": ["a@example.com"], "subject": "s", "body": "b"}),
        json!({"to": ["b@example.com"], "subject": "s", "body": "b",
               "smtp_host": "localhost", "smtp_port": smtp_port,
               "smtp_sender": "direct@pushi.test"}),
        json!({"to": ["c@example.com"], "subject": "s", "body": "b",
               "smtp_host": "169.254.169.254", "smtp_port": 80,
               "smtp_sender": "direct@pushi.test"}),
    ] {
        let (status, reply) = server
            .rest("POST", "/messaging/email", &[], Some(&body), Some(&token))
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["results"][0]["status"], "failed", "{reply}");
        let error = reply["results"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains(ONLY_PUBLIC), "{reply}");
    }

    // The app webhook is recorded by the batcher a moment after the subscription.
    let mut list = Value::Null;
    for _ in 0..100 {
        list = settled_deliveries(&server, &token).await;
        if list["deliveries"]
            .as_array()
            .is_some_and(|l| l.iter().any(|d| d["kind"] == "pusher_webhook"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_failed(&list, &hook_url, "127.0.0.1 is a loopback address");
    assert_failed(&list, &device, "127.0.0.1 is a loopback address");
    assert_failed(&list, "a@example.com", "127.0.0.1 is a loopback address");
    assert_failed(&list, "b@example.com", "localhost has no public address");
    assert_failed(&list, "c@example.com", "link-local address");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(hook.hits(), 0);
    assert_eq!(apple.hits(), 0);
    assert_eq!(smtp_connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn servers_the_operator_configured_are_trusted_but_a_tenants_port_is_not() {
    let apple = Receiver::start("127.0.0.1:0").await;
    let (smtp_connections, smtp_port) = silent_listener().await;
    let (other_connections, other_port) = silent_listener().await;
    let server = TestServer::start_with(|c| {
        delivering(c);
        c.notify.request_timeout = Duration::from_secs(1);
        c.notify.max_attempts = 1;
        c.notify.apns_url = Some(apple.url("127.0.0.1", ""));
        c.notify.smtp_url = Some(format!(
            "smtp://127.0.0.1:{smtp_port}?sender=ops@pushi.test"
        ));
        let delivery = &mut c.static_apps[0].settings.delivery;
        delivery.apn_auth_key = Some(pushi::notify::web_push::generate_vapid_key());
        delivery.apn_key_id = Some("KEYID12345".into());
        delivery.apn_team_id = Some("TEAMID1234".into());
        delivery.apn_topic = Some("com.example.app".into());
    })
    .await;
    let token = server.pushi_login().await;
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/apn",
            &[],
            Some(&json!({"tokens": ["cd".repeat(32)], "message": "hi"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["results"][0]["status"], "delivered", "{reply}");
    assert_eq!(apple.hits(), 1, "PUSHI_APNS_URL is the operator's");

    // The global SMTP_URL is the operator's: it is connected to (the silent server then
    // times the attempt out)...
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/email",
            &[],
            Some(&json!({"to": ["a@example.com"], "subject": "s", "body": "b", "wait": false})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    // ...but a message that moves it to another port aims it, and is refused.
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/email",
            &[],
            Some(
                &json!({"to": ["b@example.com"], "subject": "s", "body": "b",
                         "smtp_port": other_port}),
            ),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let error = reply["results"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("loopback address"), "{reply}");
    settled_deliveries(&server, &token).await;
    assert!(smtp_connections.load(Ordering::SeqCst) >= 1);
    assert_eq!(other_connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_allow_list_lets_named_addresses_through() {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let receiver6 = Receiver::start("[::1]:0").await;
    let push_service = Receiver::answering("127.0.0.1:0", 201, &[], "").await;
    let server = TestServer::start_with(|c| {
        delivering(c);
        c.notify.outbound_allow = vec![
            "127.0.0.1/32".parse().expect("a CIDR range"),
            "::1/128".parse().expect("a CIDR range"),
            "10.0.0.0/8".parse().expect("a CIDR range"),
        ];
    })
    .await;
    let token = server.pushi_login().await;
    let (p256dh, auth) = browser_keys();
    for (path, body) in [
        (
            "/webs",
            json!({"url": receiver.url("127.0.0.1", "/sub"), "event": "news"}),
        ),
        (
            "/web_pushes",
            json!({"endpoint": push_service.url("127.0.0.1", "/p"), "p256dh": p256dh,
                   "auth": auth, "event": "news"}),
        ),
        // Allowed, though nothing listens there.
        (
            "/webs",
            json!({"url": "http://10.0.0.1/hook", "event": "other"}),
        ),
    ] {
        let (status, reply) = server
            .rest("POST", path, &[], Some(&body), Some(&token))
            .await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "hi", "channel": "news"})),
            Some(&token),
        )
        .await;
    let urls = [
        receiver.url("127.0.0.1", "/direct"),
        receiver.url("localhost", "/by-name"),
        receiver6.url("[::1]", "/v6"),
    ];
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"urls": urls, "data": {"x": 1}})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true, "{reply}");
    let list = settled_deliveries(&server, &token).await;
    assert_eq!(
        list["counts"],
        json!({"pending": 0, "delivered": 5, "failed": 0}),
        "{list}"
    );
    assert_eq!(receiver.hits(), 3);
    assert_eq!(receiver6.hits(), 1);
    assert_eq!(push_service.hits(), 1);
    // Another loopback address is still refused.
    let (status, reply) = server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": receiver.url("127.0.0.2", "/x"), "event": "news"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
}

#[tokio::test]
async fn more_targets_than_the_cap_in_one_request_is_400_and_sends_nothing() {
    let server = TestServer::start_with(delivering).await;
    let token = server.pushi_login().await;
    let urls: Vec<String> = (0..=pushi::notify::DEFAULT_MAX_TARGETS_PER_REQUEST)
        .map(|i| format!("https://hooks.example.com/{i}"))
        .collect();
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"urls": urls, "data": {"x": 1}})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    let message = reply["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("101 targets") && message.contains("max_targets_per_request"),
        "{message}"
    );
    let (_, list) = server
        .rest("GET", "/deliveries", &[], None, Some(&token))
        .await;
    assert_eq!(list["deliveries"], json!([]));

    // A smaller cap, and the targets of every adapter of one request counted together.
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = TestServer::start_with(|c| {
        delivering(c);
        common::allow_loopback(c);
        c.notify.max_targets_per_request = 3;
    })
    .await;
    let token = server.pushi_login().await;
    let hook = |i: u32| receiver.url("127.0.0.1", &format!("/{i}"));
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"urls": [hook(1), hook(2), hook(3)], "data": {"x": 1}})),
            Some(&token),
        )
        .await;
    assert_eq!((status, &reply["success"]), (200, &json!(true)), "{reply}");
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging",
            &[],
            Some(&json!({"adapters": ["webhook", "email"], "data": {"x": 1},
                         "webhook_urls": [hook(4), hook(5)],
                         "email_to": ["a@example.com", "b@example.com"]})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("4 targets"),
        "{reply}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.hits(), 3);
}

#[tokio::test]
async fn a_receivers_answer_body_is_never_reflected() {
    const SECRET: &str = "db-password=hunter2-internal-admin-token-7f3a";
    let body = format!("<h1>Internal error</h1><pre>{SECRET}</pre>");
    let failing = Receiver::answering("127.0.0.1:0", 500, &[], &body).await;
    let refusing = Receiver::answering("127.0.0.1:0", 403, &[], &body).await;
    let gone = Receiver::answering("127.0.0.1:0", 410, &[], &body).await;
    let apple = Receiver::answering(
        "127.0.0.1:0",
        400,
        &[("content-type", "application/json")],
        &json!({"reason": SECRET}).to_string(),
    )
    .await;
    let server = TestServer::start_with(|c| {
        delivering(c);
        common::allow_loopback(c);
        let delivery = &mut c.static_apps[0].settings.delivery;
        delivery.apn_url = Some(apple.url("127.0.0.1", ""));
        delivery.apn_auth_key = Some(pushi::notify::web_push::generate_vapid_key());
        delivery.apn_key_id = Some("KEYID12345".into());
        delivery.apn_team_id = Some("TEAMID1234".into());
        delivery.apn_topic = Some("com.example.app".into());
    })
    .await;
    let token = server.pushi_login().await;
    let (p256dh, auth) = browser_keys();
    let requests = [
        (
            "/messaging/webhook",
            json!({"urls": [failing.url("127.0.0.1", "/a"), refusing.url("127.0.0.1", "/b")],
                   "data": {"x": 1}}),
        ),
        (
            "/messaging/web_push",
            json!({"endpoint": gone.url("127.0.0.1", "/p"), "p256dh": p256dh, "auth": auth,
                   "message": "m"}),
        ),
        (
            "/messaging/apn",
            json!({"tokens": ["ef".repeat(32)], "message": "hi"}),
        ),
    ];
    let mut answers = Vec::new();
    for (path, request) in requests {
        let (status, reply) = server
            .rest("POST", path, &[], Some(&request), Some(&token))
            .await;
        assert_eq!(status, 200, "{path}: {reply}");
        answers.push(reply);
    }
    let errors: Vec<String> = answers
        .iter()
        .flat_map(|a| a["results"].as_array().cloned().unwrap_or_default())
        .map(|r| r["error"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        errors.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "HTTP 500 Internal Server Error",
            "HTTP 403 Forbidden",
            "target gone, subscription removed: push subscription is gone: HTTP 410 Gone",
            "APNs HTTP 400",
        ]
    );
    let list = settled_deliveries(&server, &token).await;
    assert_eq!(list["counts"]["failed"], 4, "{list}");
    let everything = format!("{answers:?} {list}");
    for fragment in ["hunter2", "Internal error", "<pre>", "admin-token", "7f3a"] {
        assert!(
            !everything.contains(fragment),
            "{fragment:?} came back: {everything}"
        );
    }
    assert!(failing.hits() >= 2, "the 500 was retried");
}

#[tokio::test]
async fn count_zero_lists_the_default_and_no_count_lists_more_than_1000() {
    let receiver = Receiver::start("127.0.0.1:0").await;
    let server = TestServer::start_with(|c| {
        delivering(c);
        common::allow_loopback(c);
        c.notify.max_targets_per_request = 1001;
    })
    .await;
    let token = server.pushi_login().await;
    for i in 0..12 {
        let (status, _) = server
            .rest(
                "POST",
                "/events",
                &[],
                Some(&json!({"data": format!("event {i}"), "channel": "c"})),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200);
    }
    let events = |count: &'static str| {
        let (server, token) = (&server, token.clone());
        async move {
            let (status, reply) = server
                .rest("GET", "/events", &[("count", count)], None, Some(&token))
                .await;
            (status, reply["events"].as_array().map(Vec::len))
        }
    };
    assert_eq!(events("0").await, (200, Some(10)), "0 is the default");
    assert_eq!(events("").await, (200, Some(10)));
    assert_eq!(events("3").await, (200, Some(3)));
    assert_eq!(events("99999999999999999999999").await, (200, Some(12)));
    assert_eq!(events("-1").await.0, 400);
    assert_eq!(events("ten").await.0, 400);

    let urls: Vec<String> = (0..1001)
        .map(|i| receiver.url("127.0.0.1", &format!("/{i}")))
        .collect();
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"urls": urls, "data": {"x": 1}, "wait": false})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let deliveries = |count: &'static str| {
        let (server, token) = (&server, token.clone());
        async move {
            let (status, reply) = server
                .rest(
                    "GET",
                    "/deliveries",
                    &[("count", count)],
                    None,
                    Some(&token),
                )
                .await;
            (status, reply["deliveries"].as_array().map(Vec::len))
        }
    };
    assert_eq!(deliveries("0").await, (200, Some(100)), "0 is the default");
    assert_eq!(deliveries("5000").await, (200, Some(1000)), "at most 1000");
    assert_eq!(deliveries("1").await, (200, Some(1)));
    assert_eq!(deliveries("x").await.0, 400);
}

#[tokio::test]
async fn extreme_auth_timestamps_get_a_clean_401() {
    let server = TestServer::start().await;
    let path = format!("/apps/{}/events", server.app.id);
    let body = json!({"name": "e", "channel": "c", "data": "x"}).to_string();
    for timestamp in [
        i64::MIN.to_string(),
        (i64::MIN + 1).to_string(),
        "-1".to_owned(),
        (i64::MAX - 1).to_string(),
        i64::MAX.to_string(),
        "99999999999999999999999".to_owned(),
    ] {
        let mut params = vec![
            ("auth_key".to_owned(), server.app.key.clone()),
            ("auth_timestamp".to_owned(), timestamp.clone()),
            ("auth_version".to_owned(), "1.0".to_owned()),
            (
                "body_md5".to_owned(),
                pushi::auth::body_md5(body.as_bytes()),
            ),
        ];
        let signature = pushi::auth::sign(
            &server.app.secret,
            &pushi::auth::request_string_to_sign("POST", &path, &params),
        );
        params.push(("auth_signature".to_owned(), signature));
        let (status, reply) = server.raw("POST", &path, &params, body.clone()).await;
        assert_eq!(status, 401, "{timestamp}: {reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| m.contains("auth_timestamp")),
            "{timestamp}: {reply}"
        );
    }
    // The server is still there, and a sane timestamp still works.
    let (status, reply) = server.trigger("c", "e", "x").await;
    assert_eq!(status, 200, "{reply}");
}
