//! Offline delivery end to end: REST subscriptions, publishes, the durable outbox and real
//! HTTP receivers (webhooks, Pusher app webhooks, a Web Push service).

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use common::TestServer;
use serde_json::{Value, json};

/// A local HTTP server that records requests and answers with scripted statuses (200 once
/// the script runs out).
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> (Self, SocketAddr) {
        let receiver = Self::default();
        receiver.script.lock().unwrap().extend(script);
        let addr = receiver.clone().listen("127.0.0.1:0").await;
        (receiver, addr)
    }

    async fn listen(self, addr: &str) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(any(record)).with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await });
        local
    }

    fn bodies(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_slice(b).unwrap_or(Value::Null))
            .collect()
    }

    /// Every Pusher webhook event received so far, once one of them satisfies `done` (or
    /// after about three seconds, for the caller's assertions to report).
    async fn hook_events_until(&self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut events = Vec::new();
        for _ in 0..60 {
            events = self
                .bodies()
                .iter()
                .flat_map(|b| b["events"].as_array().cloned().unwrap_or_default())
                .collect();
            if events.iter().any(&done) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        events
    }

    async fn wait_for(&self, n: usize) -> Vec<(HeaderMap, Bytes)> {
        for _ in 0..200 {
            if self.requests.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let got = self.requests.lock().unwrap().clone();
        assert!(got.len() >= n, "expected {n} requests, got {}", got.len());
        got
    }
}

async fn record(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    r.requests.lock().unwrap().push((headers, body));
    let status = r.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

/// Points the test app's Pusher-style webhooks at `url`, for `event_types` (empty: all).
fn app_webhook(c: &mut pushi::config::Config, url: &str, event_types: &[&str]) {
    c.static_apps[0].settings.webhooks = vec![pushi::app::WebhookConfig {
        url: url.to_owned(),
        event_types: event_types.iter().map(|t| t.to_string()).collect(),
    }];
}

/// Quick retries, and the local receivers allowed (the outbound policy refuses loopback).
fn fast_retries(c: &mut pushi::config::Config) {
    common::allow_loopback(c);
    c.notify.base_backoff = Duration::from_millis(50);
    c.notify.max_backoff = Duration::from_millis(200);
    c.notify.request_timeout = Duration::from_secs(2);
    c.notify.webhook_hold = Duration::from_millis(400);
}

fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn web_subscriptions_receive_channel_events_with_retries() {
    let server = TestServer::start_with(fast_retries).await;
    let token = server.pushi_login().await;
    let (receiver, addr) = Receiver::start(&[500, 503]).await;
    let url = format!("http://{addr}/hook");
    let (status, first) = server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": url, "event": "news"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (_, again) = server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": url, "event": "news"})),
            Some(&token),
        )
        .await;
    assert_eq!(first["id"], again["id"], "no duplicate subscription");

    let body = json!({"data": {"title": "T"}, "event": "update", "channel": "news"});
    server
        .rest("POST", "/events", &[], Some(&body), Some(&token))
        .await;
    let requests = receiver.wait_for(3).await;
    let ids: Vec<&str> = requests
        .iter()
        .map(|(h, _)| h.get("x-pushi-delivery").unwrap().to_str().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] == w[1]),
        "one delivery id across retries: {ids:?}"
    );
    let delivered = &receiver.bodies()[2];
    assert_eq!(delivered["channel"], "news");
    assert_eq!(delivered["event"], "update");
    assert_eq!(delivered["data"], r#"{"title":"T"}"#);
    assert!(delivered["mid"].is_string());

    // The outbox records it as delivered after three attempts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, list) = server
        .rest("GET", "/deliveries", &[], None, Some(&token))
        .await;
    assert_eq!(list["deliveries"][0]["status"], "delivered");
    assert_eq!(list["deliveries"][0]["attempts"], 3);

    // Deleting by percent-encoded URL works.
    let path = format!("/webs/{}/news", encode(&url));
    let (status, deleted) = server.rest("DELETE", &path, &[], None, Some(&token)).await;
    assert_eq!((status, deleted["url"].clone()), (200, json!(url)));
    let (_, list) = server.rest("GET", "/webs", &[], None, Some(&token)).await;
    assert_eq!(list["subscriptions"], json!([]));
}

#[tokio::test]
async fn a_target_gets_one_delivery_per_publish_including_personal_aliases() {
    let server = TestServer::start_with(fast_retries).await;
    let token = server.pushi_login().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/hook");
    let sign = |target: &str, event: &str| {
        pushi::auth::auth_string(
            &server.app.key,
            &server.app.secret,
            &format!("{target}:{event}"),
        )
    };
    for event in ["news", "sports", "personal-u1"] {
        let auth = sign(&url, event);
        let (status, reply) = server
            .rest(
                "POST",
                "/webs",
                &[("auth", &auth)],
                Some(&json!({"url": url, "event": event})),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    let (status, reply) = server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "both", "channel": ["news", "sports"]})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    receiver.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.bodies().len(), 1);
    assert_eq!(receiver.bodies()[0]["channel"], "news");

    // Only through the personal alias: u1 subscribed to "weather".
    let (receiver2, addr2) = Receiver::start(&[]).await;
    let url2 = format!("http://{addr2}/hook");
    let auth = sign(&url2, "personal-u2");
    let (status, reply) = server
        .rest(
            "POST",
            "/webs",
            &[("auth", &auth)],
            Some(&json!({"url": url2, "event": "personal-u2"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    server
        .rest(
            "POST",
            "/subscriptions",
            &[],
            Some(&json!({"user_id": "u2", "event": "weather"})),
            Some(&token),
        )
        .await;
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "rain", "channel": "weather"})),
            Some(&token),
        )
        .await;
    let got = receiver2.wait_for(1).await;
    let body: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(body["data"], "rain");
}

#[tokio::test]
async fn deliveries_wait_for_a_receiver_that_is_down() {
    let server = TestServer::start_with(fast_retries).await;
    let token = server.pushi_login().await;
    // Reserve a port, then close it: the receiver is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/hook");
    server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": url, "event": "c"})),
            Some(&token),
        )
        .await;
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "wait for me", "channel": "c"})),
            Some(&token),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let receiver = Receiver::default();
    receiver.clone().listen(&format!("127.0.0.1:{port}")).await;
    let got = receiver.wait_for(1).await;
    let body: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert_eq!(body["data"], "wait for me");
}

#[tokio::test]
async fn private_channel_targets_need_a_signature() {
    let server = TestServer::start_with(common::allow_loopback).await;
    let token = server.pushi_login().await;
    let url = "http://127.0.0.1:9/hook";
    let (status, err) = server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": url, "event": "private-x"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 403, "{err}");
    let auth = pushi::auth::auth_string(
        &server.app.key,
        &server.app.secret,
        &format!("{url}:private-x"),
    );
    let (status, _) = server
        .rest(
            "POST",
            "/webs",
            &[("auth", &auth)],
            Some(&json!({"url": url, "event": "private-x"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    let (status, err) = server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": url})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("event"));
    let (status, _) = server
        .rest(
            "POST",
            "/webs",
            &[],
            Some(&json!({"url": "not a url", "event": "e"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn pusher_app_webhooks_are_signed_batched_and_hold_leaves() {
    let (receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/pusher");
    let server = TestServer::start_with(|c| {
        fast_retries(c);
        app_webhook(c, &url, &[]);
    })
    .await;
    let mut a = server.connect().await;
    a.join_presence(&server, "presence-room", "alice", json!({}))
        .await;
    let got = receiver.wait_for(1).await;
    let (headers, body) = &got[0];
    assert_eq!(headers["x-pusher-key"], server.app.key.as_str());
    let expected = pushi::auth::sign(&server.app.secret, std::str::from_utf8(body).unwrap());
    assert_eq!(headers["x-pusher-signature"], expected.as_str());
    let body: Value = serde_json::from_slice(body).unwrap();
    assert!(body["time_ms"].as_i64().is_some());
    let names: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["channel_occupied", "member_added"]);

    // A quick reconnect within the hold time reports nothing.
    drop(a);
    let mut a = server.connect().await;
    a.join_presence(&server, "presence-room", "alice", json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(receiver.bodies().len(), 1, "{:?}", receiver.bodies());

    // A client event is reported with its data as a string.
    let mut b = server.connect().await;
    b.join_presence(&server, "presence-room", "bob", json!({}))
        .await;
    b.send(json!({"event": "client-hi", "channel": "presence-room", "data": {"x": 1}}))
        .await;
    // A real leave is reported after the hold.
    drop(a);
    let names = receiver
        .hook_events_until(|e| e["name"] == "member_removed")
        .await;
    let client_event = names
        .iter()
        .find(|e| e["name"] == "client_event")
        .expect("client_event reported");
    assert_eq!(client_event["data"], r#"{"x":1}"#);
    assert_eq!(client_event["user_id"], "bob");
    assert_eq!(client_event["socket_id"], b.socket_id);
    let removed = names
        .iter()
        .find(|e| e["name"] == "member_removed")
        .expect("member_removed reported");
    assert_eq!(removed["user_id"], "alice");
}

#[tokio::test]
async fn subscription_count_webhooks_report_the_count_once_per_change() {
    let (receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/pusher");
    let server = TestServer::start_with(|c| {
        fast_retries(c);
        c.static_apps[0].settings.subscription_count = true;
        app_webhook(c, &url, &["subscription_count"]);
    })
    .await;
    let mut a = server.connect().await;
    a.subscribe("counted").await;
    a.recv_event("pusher_internal:subscription_count").await;
    let mut b = server.connect().await;
    b.subscribe("counted").await;
    b.recv_event("pusher_internal:subscription_count").await;

    let counts = receiver
        .hook_events_until(|e| e["subscription_count"] == 2)
        .await;
    // Only the configured event type, and the counts as they changed.
    assert!(
        counts.iter().all(|e| e["name"] == "subscription_count"),
        "{counts:?}"
    );
    assert!(
        counts.iter().all(|e| e["channel"] == "counted"),
        "{counts:?}"
    );
    let seen: Vec<i64> = counts
        .iter()
        .filter_map(|e| e["subscription_count"].as_i64())
        .collect();
    assert_eq!(seen, [1, 2]);
}

#[tokio::test]
async fn direct_webhook_messaging_reports_each_target() {
    let server = TestServer::start_with(fast_retries).await;
    let token = server.pushi_login().await;
    let (receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/direct");
    for _ in 0..2 {
        let (status, reply) = server
            .rest(
                "POST",
                "/messaging/webhook",
                &[],
                Some(&json!({"urls": [url], "data": {"hello": "world"}, "headers": {"X-Extra": "1"}})),
                Some(&token),
            )
            .await;
        assert_eq!(status, 200, "{reply}");
        assert_eq!(reply["success"], true);
        assert_eq!(reply["results"][0]["status"], "delivered");
    }
    // Every request delivers (the original delivered each target once per process).
    let got = receiver.wait_for(2).await;
    assert_eq!(got[0].0["x-extra"], "1");
    assert_eq!(
        serde_json::from_slice::<Value>(&got[1].1).unwrap(),
        json!({"hello": "world"})
    );

    let (status, err) = server
        .rest(
            "POST",
            "/messaging/webhook",
            &[],
            Some(&json!({"data": 1})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("urls"));
    let (status, err) = server
        .rest(
            "POST",
            "/messaging/apn",
            &[],
            Some(&json!({"message": "m"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("tokens"));
    let (status, reply) = server
        .rest(
            "POST",
            "/messaging",
            &[],
            Some(
                &json!({"adapters": ["webhook", "nope"], "webhook_urls": [url], "data": {"k": 1}}),
            ),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply["webhook"]["success"], true);
    assert_eq!(reply["nope"]["success"], false);
}

#[tokio::test]
async fn direct_messages_of_every_kind_record_what_pushi_sends() {
    let server = TestServer::start_with(fast_retries).await;
    let token = server.pushi_login().await;
    let endpoint = "http://127.0.0.1:9/push/1";
    let requests = [
        (
            "/messaging/apn",
            json!({"tokens": ["ab12"], "message": "hello", "sandbox": true}),
        ),
        (
            "/messaging/email",
            json!({"to": ["a@example.com"], "subject": "S", "body": "B", "html": true,
                   "smtp_host": "127.0.0.1", "smtp_port": 9}),
        ),
        (
            "/messaging/web_push",
            json!({"endpoint": endpoint, "p256dh": "k1", "auth": "a1",
                   "message": {"title": "T"}, "vapid_email": "ops@example.com"}),
        ),
        (
            "/messaging",
            json!({"adapters": ["apn", "email", "web_push"], "data": {"k": 1},
                   "apn_tokens": "cd34", "email_to": "b@example.com",
                   "web_push_subscriptions": [{"endpoint": "http://127.0.0.1:9/push/2",
                                               "p256dh": "k2", "auth": "a2"}]}),
        ),
    ];
    for (path, mut body) in requests {
        body["wait"] = json!(false);
        let (status, reply) = server
            .rest("POST", path, &[], Some(&body), Some(&token))
            .await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    let (_, list) = server
        .rest("GET", "/deliveries", &[], None, Some(&token))
        .await;
    let payload = |target: &str| {
        list["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["target"] == target)
            .unwrap_or_else(|| panic!("no delivery to {target}: {list}"))["payload"]
            .clone()
    };
    assert_eq!(
        payload("ab12"),
        json!({"token": "ab12", "message": "hello", "sandbox": true})
    );
    assert_eq!(
        payload("a@example.com"),
        json!({"to": "a@example.com", "subject": "S", "body": "B", "html": true,
               "smtp": {"host": "127.0.0.1", "port": 9, "user": null, "password": null,
                        "starttls": null, "sender": null}})
    );
    assert_eq!(
        payload(endpoint),
        json!({"endpoint": endpoint, "p256dh": "k1", "auth": "a1",
               "payload": r#"{"title":"T"}"#, "vapid_key": null,
               "vapid_email": "ops@example.com"})
    );
    // Several adapters at once: `data` stands in for each adapter's own message.
    assert_eq!(
        payload("cd34"),
        json!({"token": "cd34", "message": {"k": 1}, "sandbox": null})
    );
    assert_eq!(
        payload("b@example.com"),
        json!({"to": "b@example.com", "subject": "Notification", "body": "{\n  \"k\": 1\n}",
               "html": false, "smtp": null})
    );
    assert_eq!(
        payload("http://127.0.0.1:9/push/2"),
        json!({"endpoint": "http://127.0.0.1:9/push/2", "p256dh": "k2", "auth": "a2",
               "payload": r#"{"k":1}"#, "vapid_key": null, "vapid_email": null})
    );
}

#[tokio::test]
async fn one_app_never_sees_another_apps_deliveries_or_counts() {
    let server = TestServer::start_with(|c| {
        fast_retries(c);
        c.static_apps.push(common::test_app("2"));
    })
    .await;
    let one = server.pushi_login().await;
    let two = server.pushi_login_as(&common::test_app("2")).await;
    let (_receiver, addr) = Receiver::start(&[]).await;
    let url = format!("http://{addr}/hook");
    let send = |sid: &str, n: u32| {
        let (server, url, sid) = (&server, url.clone(), sid.to_owned());
        async move {
            for _ in 0..n {
                let body = json!({"url": url, "data": {"hello": "world"}});
                let (status, reply) = server
                    .rest("POST", "/messaging/webhook", &[], Some(&body), Some(&sid))
                    .await;
                assert_eq!(status, 200, "{reply}");
                assert_eq!(reply["results"][0]["status"], "delivered", "{reply}");
            }
        }
    };
    let outbox = |sid: &str| {
        let (server, sid) = (&server, sid.to_owned());
        async move {
            let (status, list) = server
                .rest("GET", "/deliveries", &[], None, Some(&sid))
                .await;
            assert_eq!(status, 200, "{list}");
            list
        }
    };

    send(&one, 2).await;
    let theirs = outbox(&two).await;
    assert_eq!(theirs["deliveries"], json!([]));
    assert_eq!(
        theirs["counts"],
        json!({"pending": 0, "delivered": 0, "failed": 0})
    );
    send(&two, 1).await;
    let ours = outbox(&one).await;
    assert_eq!(ours["deliveries"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        ours["counts"],
        json!({"pending": 0, "delivered": 2, "failed": 0})
    );
    let theirs = outbox(&two).await;
    assert_eq!(theirs["deliveries"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        theirs["counts"],
        json!({"pending": 0, "delivered": 1, "failed": 0})
    );
}

#[tokio::test]
async fn web_push_subscriptions_get_encrypted_pushes_and_410_removes_them() {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let server = TestServer::start_with(fast_retries).await;
    let token = server.pushi_login().await;
    let (status, key) = server
        .rest("GET", "/vapid_key", &[], None, Some(&token))
        .await;
    assert_eq!(status, 200, "{key}");
    let vapid_public = key["vapid_public_key"].as_str().unwrap().to_owned();
    let (_, again) = server
        .rest("GET", "/vapid_key", &[], None, Some(&token))
        .await;
    assert_eq!(
        again["vapid_public_key"], vapid_public,
        "the key pair is stored"
    );

    // The browser: a P-256 key pair and an auth secret.
    let browser = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let public = browser.public_key().to_encoded_point(false);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let p256dh = b64.encode(public.as_bytes());
    let auth_secret = [7u8; 16];
    let auth = b64.encode(auth_secret);

    let (receiver, addr) = Receiver::start(&[201, 410]).await;
    let endpoint = format!("http://{addr}/push/abc");
    let (status, created) = server
        .rest(
            "POST",
            "/web_pushes",
            &[],
            Some(&json!({"endpoint": endpoint, "p256dh": p256dh, "auth": auth, "event": "alerts"})),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{created}");

    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": {"title": "Hi"}, "channel": "alerts"})),
            Some(&token),
        )
        .await;
    let got = receiver.wait_for(1).await;
    let (headers, body) = &got[0];
    assert_eq!(headers["content-encoding"], "aes128gcm");
    let authorization = headers["authorization"].to_str().unwrap();
    assert!(
        authorization.contains(&format!("k={vapid_public}")),
        "{authorization}"
    );
    let plain =
        web_push_native::decrypt(body.to_vec(), &browser, &auth_secret.into()).expect("decrypts");
    assert_eq!(
        serde_json::from_slice::<Value>(&plain).unwrap(),
        json!({"title": "Hi"})
    );

    // The push service says the subscription is gone: it is removed.
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "second", "channel": "alerts"})),
            Some(&token),
        )
        .await;
    receiver.wait_for(2).await;
    // The worker removes the subscription before it records the delivery as failed.
    let mut outbox = Value::Null;
    for _ in 0..100 {
        (_, outbox) = server
            .rest("GET", "/deliveries", &[], None, Some(&token))
            .await;
        if outbox["deliveries"][0]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(outbox["deliveries"][0]["status"], "failed", "{outbox}");
    let (_, list) = server
        .rest("GET", "/web_pushes", &[], None, Some(&token))
        .await;
    assert_eq!(
        list["subscriptions"],
        json!([]),
        "a 410 removes the subscription"
    );

    // This node's publishes stop reaching it at once, not when its cached targets expire.
    server
        .rest(
            "POST",
            "/events",
            &[],
            Some(&json!({"data": "third", "channel": "alerts"})),
            Some(&token),
        )
        .await;
    let (_, outbox) = server
        .rest("GET", "/deliveries", &[], None, Some(&token))
        .await;
    assert_eq!(outbox["counts"]["failed"], 1, "{outbox}");
    assert_eq!(
        outbox["deliveries"].as_array().map(Vec::len),
        Some(2),
        "{outbox}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests.lock().unwrap().len(), 2);
}
